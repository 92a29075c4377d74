# Runs under MicroPython too
"""edgecore.jsonenc's float writer: CPython's repr on every runtime.

Plain functions with bare asserts: runs under pytest and under MicroPython. The expected
strings were computed with CPython's repr; the hypothesis check of ``float_repr`` against
repr for random doubles is in tests/test_wire_props.py.
"""

import binascii
import struct

from edgecore import jsonenc, wire

TRICKY = [
    (9.77215304, "9.77215304"),
    (1700000000.123457, "1700000000.123457"),
    (0.1, "0.1"),
    (1e-05, "1e-05"),
    (0.0001, "0.0001"),
    (1e16, "1e+16"),
    (9999999999999998.0, "9999999999999998.0"),
    (1.5e-7, "1.5e-07"),
    (123456789.123, "123456789.123"),
    (5e-324, "5e-324"),
    (2.2250738585072014e-308, "2.2250738585072014e-308"),
    (1.7976931348623157e308, "1.7976931348623157e+308"),
    (-0.0, "-0.0"),
    (0.0, "0.0"),
    (2.5, "2.5"),
    (100.0, "100.0"),
    (-1e22, "-1e+22"),
    (1e-100, "1e-100"),
    # Exact tie at 17 digits (...258.125): CPython rounds half to even.
    (245010723912258.12, "245010723912258.12"),
]

# IEEE-754 bits (hex) -> CPython repr, for doubles whose MicroPython 1.27 repr differs.
BITS = [
    ("4126b12716041893", "743571.543"),  # MicroPython repr: 743571.5429999999
    ("3f83c2bda67d7b80", "0.00964878239"),  # MicroPython repr: 0.009648782389999999
    ("41932fe04399999a", "80476176.9"),  # MicroPython repr: 80476176.90000001
    ("412d1041a147ae14", "952352.815"),  # MicroPython repr: 952352.8149999999
    ("412b14681eb851ec", "887348.06"),  # MicroPython repr: 887348.0600000001
    ("40c15798ece9a2c6", "8879.19473"),  # MicroPython repr: 8879.194729999999
    ("40235b23ce914811", "9.67800756"),  # MicroPython repr: 9.678007559999999
    ("3fb293cd003d2b73", "0.072567761"),  # MicroPython repr: 0.07256776099999999
    ("41612de9e70a3d71", "9006927.22"),  # MicroPython repr: 9006927.220000001
    ("41920e5ab399999a", "75732652.9"),  # MicroPython repr: 75732652.90000001
    ("40c0698001a36e2f", "8403.00005"),  # MicroPython repr: 8403.000050000001
    ("41622dc7c1eb851f", "9530942.06"),  # MicroPython repr: 9530942.060000001
    ("3fe40bea2e877ce1", "0.62645444"),  # MicroPython repr: 0.6264544399999999
    ("402361eb9ff6aaed", "9.6912508"),  # MicroPython repr: 9.691250800000001
    ("5fe48bdeead11f23", "8.60880578948587e+153"),  # MicroPython repr: 8.608805789485869e+153
    ("4190a8dfd0666666", "69875700.1"),  # MicroPython repr: 69875700.09999999
    ("405893f10e601514", "98.3115879"),  # MicroPython repr: 98.31158790000001
    ("4080883ded6ba8c6", "529.030238"),  # MicroPython repr: 529.0302380000001
    ("40c0fcc7525460aa", "8697.5572"),  # MicroPython repr: 8697.557199999999
    ("41612ac6270a3d71", "9000497.22"),  # MicroPython repr: 9000497.220000001
    ("3fe40ddc2a490ffb", "0.626691897"),  # MicroPython repr: 0.6266918970000001
    ("412e5df416041893", "995066.043"),  # MicroPython repr: 995066.0429999999
    ("e26171035bcebd89", "-8.03508364667439e+165"),  # MicroPython repr: -8.035083646674391e+165
    ("4051849b5a63f9a5", "70.071982"),  # MicroPython repr: 70.07198200000001
    ("3fb071774daab2e5", "0.0642313542"),  # MicroPython repr: 0.06423135419999999
    ("3f495c705c74203f", "0.00077395903"),  # MicroPython repr: 0.0007739590300000001
    ("1e4b2b28553ae95d", "9.43581378139643e-163"),  # MicroPython repr: 9.435813781396429e-163
    ("408c88fa0e842742", "913.122098"),  # MicroPython repr: 913.1220980000001
    ("4161e83916666666", "9388488.7"),  # MicroPython repr: 9388488.699999999
    ("3fb15abbdb8a6b2e", "0.0677907382"),  # MicroPython repr: 0.06779073820000001
    ("40c227a9421c0443", "9295.32233"),  # MicroPython repr: 9295.322330000001
    ("3fb574841a023f07", "0.0838091434"),  # MicroPython repr: 0.08380914339999999
    ("61f2876180d4d6eb", "6.66876926190268e+163"),  # MicroPython repr: 6.668769261902681e+163
    ("3fb85d52054f57ff", "0.0951739562"),  # MicroPython repr: 0.09517395620000001
    ("4161aaf93b851eb8", "9263049.86"),  # MicroPython repr: 9263049.859999999
    ("40f55c549eecbfb1", "87493.2888"),  # MicroPython repr: 87493.28879999999
    ("dc27f5f6f3c62cab", "-8.70781844982819e+135"),  # MicroPython repr: -8.707818449828191e+135
    ("3fb6c118e1e9b898", "0.0888839294"),  # MicroPython repr: 0.08888392940000001
    ("4190caf640666666", "70434192.1"),  # MicroPython repr: 70434192.09999999
    ("3fb3f0d1916721f6", "0.0778933506"),  # MicroPython repr: 0.07789335059999999
]


def _from_bits(hexbits):
    return struct.unpack(">d", binascii.unhexlify(hexbits))[0]


def test_tricky_values_format_as_cpython_repr():
    for value, expected in TRICKY:
        assert jsonenc.dump_number(value) == expected, (expected, jsonenc.dump_number(value))
        assert jsonenc.float_repr(value) == expected, expected
        if value > 0:
            assert jsonenc.dump_number(-value) == "-" + expected


def test_values_micropython_repr_gets_wrong():
    for hexbits, expected in BITS:
        value = _from_bits(hexbits)
        assert jsonenc.dump_number(value) == expected, (hexbits, expected)
        assert jsonenc.float_repr(value) == expected, (hexbits, expected)


def test_percent_e_fallback_path():
    # The path for runtimes without big ints: same answers except (rarely) on exact ties.
    for value, expected in TRICKY[:-1]:
        assert jsonenc.float_repr(value, exact=False) == expected, expected
    for hexbits, expected in BITS:
        assert jsonenc.float_repr(_from_bits(hexbits), exact=False) == expected, expected


def test_round_half_even():
    assert jsonenc._round_digits("245010723912258125", 15, 17) == ("24501072391225812", 15)
    assert jsonenc._round_digits("245010723912258135", 15, 17) == ("24501072391225814", 15)
    assert jsonenc._round_digits("2450107239122581251", 15, 17) == ("24501072391225813", 15)
    assert jsonenc._round_digits("999", 0, 2) == ("10", 1)
    assert jsonenc._round_digits("12", 3, 5) == ("12", 3)


def test_integers_and_bodies():
    assert jsonenc.dump_number(3) == "3"
    assert jsonenc.dump_number(-(10**20)) == "-100000000000000000000"
    metric = {"MetricName": "CpuLoad", "Value": 9.77215304, "Timestamp": 1700000000.8}
    params = {"AgentVersion": "1.0", "DeviceName": "cam-1", "DeviceFleetName": "fleet-a",
              "AgentMetrics": [metric]}
    assert wire.build_request("SendHeartbeat", params)[3] == (
        b'{"AgentMetrics": [{"MetricName": "CpuLoad", "Value": 9.77215304, '
        b'"Timestamp": 1700000000.8}], "AgentVersion": "1.0", "DeviceName": "cam-1", '
        b'"DeviceFleetName": "fleet-a"}'
    )


def test_runtime_repr_fast_path_shapes():
    # The forms a runtime repr takes; only <= 15 digits that read back are accepted.
    assert jsonenc._short_enough(9.77215304, "9.77215304") == ("977215304", 1)
    assert jsonenc._short_enough(1e-05, "1e-05") == ("1", -4)
    assert jsonenc._short_enough(1e16, "1e+16") == ("1", 17)
    assert jsonenc._short_enough(100.0, "100.0") == ("1", 3)
    assert jsonenc._short_enough(0.0642313542, "0.0642313542") == ("642313542", -1)
    assert jsonenc._short_enough(9.77215304, "9.772153039999999") is None  # 16 digits
    assert jsonenc._short_enough(9.77215304, "9.7721530") is None  # does not read back
    assert jsonenc._short_enough(1.0, "inf") is None
    assert jsonenc.float_repr(1e-320) == "1e-320"  # subnormal: never the fast path
