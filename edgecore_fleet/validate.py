"""Request validation against a service model's shape table, worded as AWS words it.

One walker for both APIs: the device API's table is ``edgecore.shapes.SHAPES`` (the
same constraints the device itself checks, with its ``PATTERNS`` checkers), the control
plane's is ``cpmodel.SHAPES`` (generated from botocore's ``sagemaker`` model). Rows share
their layout: ("structure", members, required), ("list", member[, min, max]),
("string", min, max, pattern, enum), numbers, "boolean", "timestamp", "map".

Every broken constraint is collected and reported in one ValidationException
("2 validation errors detected: Value null at 'agentVersion' failed to satisfy
constraint: Member must not be null; ..."); a value of the wrong JSON type is a
SerializationException, as AWS answers. Unknown members are ignored, as AWS does.
Recursion follows the model's shapes (a few levels), never the data's depth.
"""

from .errors import ApiError

_NUMBERS = ("integer", "long", "float", "double")


def _camel(name):
    return name[:1].lower() + name[1:]


def _repr(value):
    if isinstance(value, str):
        return "'%s'" % (value if len(value) <= 200 else value[:200] + "...")
    return str(value)


def _serialization(path, expected):
    return ApiError(400, "SerializationException",
                    "Expected %s at '%s'" % (expected, path or "<root>"))


class Validator:
    """validate(shape_name, value) for one shape table. check_pattern(pattern, value)
    says whether a string satisfies the model's pattern."""

    def __init__(self, shapes, check_pattern):
        self.shapes = shapes
        self.check_pattern = check_pattern

    def validate(self, shape_name, value, path=""):
        """Raise ApiError (ValidationException, SerializationException) for a bad value."""
        errors = []
        self._walk(shape_name, value, path, errors)
        if errors:
            raise ApiError(400, "ValidationException", "%d validation error%s detected: %s" % (
                len(errors), "" if len(errors) == 1 else "s", "; ".join(errors[:20])))

    def _walk(self, shape_name, value, path, errors):
        row = self.shapes[shape_name]
        kind = row[0]
        if kind == "structure":
            if not isinstance(value, dict):
                raise _serialization(path, "an object")
            for name in row[2]:
                if value.get(name) is None:
                    errors.append("Value null at '%s' failed to satisfy constraint: Member "
                                  "must not be null" % _join(path, name))
            for name, member in row[1]:
                if value.get(name) is not None:
                    self._walk(member, value[name], _join(path, name), errors)
        elif kind == "list":
            if not isinstance(value, list):
                raise _serialization(path, "a list")
            self._length(row[2] if len(row) > 2 else None, row[3] if len(row) > 2 else None,
                         value, path, errors)
            for i, item in enumerate(value):
                self._walk(row[1], item, "%s.%d.member" % (path, i + 1), errors)
        elif kind == "map":
            if not isinstance(value, dict):
                raise _serialization(path, "an object")
            self._length(row[3], row[4], value, path, errors)
            for k, v in value.items():
                self._walk(row[1], k, "%s.key" % path, errors)
                self._walk(row[2], v, "%s.value" % path, errors)
        elif kind == "string":
            if not isinstance(value, str):
                raise _serialization(path, "a string")
            self._string(row, value, path, errors)
        elif kind == "boolean":
            if not isinstance(value, bool):
                raise _serialization(path, "a boolean")
        elif kind in _NUMBERS or kind == "timestamp":
            # JSON protocols carry timestamps as epoch seconds (numbers).
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise _serialization(path, "a number")
            if value != value or value in (float("inf"), float("-inf")):
                raise _serialization(path, "a finite number")
            if kind in ("integer", "long") and not float(value).is_integer():
                raise _serialization(path, "an integer")
            if kind in _NUMBERS and len(row) > 1:
                prefix = "Value %s at '%s' failed to satisfy constraint: " % (_repr(value), path)
                if row[1] is not None and value < row[1]:
                    errors.append(prefix + "Member must have value greater than or equal to "
                                  "%s" % row[1])
                if row[2] is not None and value > row[2]:
                    errors.append(prefix + "Member must have value less than or equal to "
                                  "%s" % row[2])

    @staticmethod
    def _length(lo, hi, value, path, errors):
        prefix = "Value at '%s' failed to satisfy constraint: " % path
        if lo is not None and len(value) < lo:
            errors.append(prefix + "Member must have length greater than or equal to %d" % lo)
        if hi is not None and len(value) > hi:
            errors.append(prefix + "Member must have length less than or equal to %d" % hi)

    def _string(self, row, value, path, errors):
        lo, hi, pattern, enum = row[1], row[2], row[3], row[4]
        prefix = "Value %s at '%s' failed to satisfy constraint: " % (_repr(value), path)
        if enum and value not in enum:
            errors.append(prefix + "Member must satisfy enum value set: [%s]" % ", ".join(enum))
        if lo is not None and len(value) < lo:
            errors.append(prefix + "Member must have length greater than or equal to %d" % lo)
        if hi is not None and len(value) > hi:
            errors.append(prefix + "Member must have length less than or equal to %d" % hi)
        if pattern is not None and not self.check_pattern(pattern, value):
            errors.append(prefix + "Member must satisfy regular expression pattern: " + pattern)


def _join(path, name):
    return path + "." + _camel(name) if path else _camel(name)


# ---------------------------------------------------------------- the two tables
def _device_pattern(pattern, value):
    from edgecore.shapes import PATTERNS

    return PATTERNS[pattern](value)


_compiled = {}
# The control plane's patterns are full-matched (names end up in ARNs and URLs), except
# the version pattern, which AWS applies as a search (as edgecore.shapes does for the
# device side's Version).
_SEARCHED = ("[a-zA-Z0-9\\ \\_\\.]+",)


def _control_pattern(pattern, value):
    rx = _compiled.get(pattern)
    if rx is None:
        import regex  # \p{L} and friends (tag patterns); the stdlib re has no \p

        rx = _compiled[pattern] = regex.compile(pattern, regex.V1)
    if pattern in _SEARCHED:
        return rx.search(value) is not None
    return rx.fullmatch(value) is not None


def device_validator():
    from edgecore.shapes import SHAPES

    return Validator(SHAPES, _device_pattern)


def control_validator():
    from .cpmodel import SHAPES

    return Validator(SHAPES, _control_pattern)


def check_name(value, what, shape="EntityName"):
    """Admin helpers: raise ApiError unless `value` is a valid control-plane `shape`."""
    control_validator().validate(shape, value, what)
