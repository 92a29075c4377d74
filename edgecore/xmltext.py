"""Bounded text search in small XML documents (MicroPython has no xml module).

Enough for the flat answers edgecore reads: S3 error bodies and STS credentials.
"""


def between(text, start_tag, end_tag, limit, start=0):
    """The text between the first ``start_tag`` at or after ``start`` and the next
    ``end_tag``, looking no further than ``limit``; None when either is missing."""
    i = text.find(start_tag, start, limit)
    if i < 0:
        return None
    i += len(start_tag)
    j = text.find(end_tag, i, limit)
    if j < 0:
        return None
    return text[i:j]


def unescape(s):
    """The five predefined XML entities replaced (``&amp;`` last)."""
    if "&" not in s:
        return s
    for ent, ch in (("&lt;", "<"), ("&gt;", ">"), ("&quot;", '"'), ("&apos;", "'"), ("&amp;", "&")):
        s = s.replace(ent, ch)
    return s
