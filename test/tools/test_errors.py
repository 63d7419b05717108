"""hsnn_perception.tools.errors: the one-line messages of the command-line tools."""

from __future__ import annotations

import numpy as np
import pytest

from hsnn_perception.tools.errors import check_namespace, one_line

DV_MESSAGE = (
    "cannot open x.aedat4 as AEDAT4: /project/include/dv-processing/io/simplefile.hpp(313): "
    "void dv::io::SimpleFile::readInto(T*, size_t) const [with T = std::byte]()\n"
    "EndOfFile: Error info: File x.aedat4 End-Of-File reached\n"
    "Stacktrace:\n 0# 0x00000000003AFA1D in dv_processing.so\n 1# _start in python3\n"
)


def test_one_line_cuts_a_cpp_stack_trace():
    assert one_line(RuntimeError(DV_MESSAGE)) == (
        "cannot open x.aedat4 as AEDAT4: EndOfFile: Error info: File x.aedat4 End-Of-File reached"
    )


def test_one_line_folds_line_breaks_and_names_the_path_of_an_os_error(tmp_path):
    assert "\n" not in one_line(ValueError(f"invalid logits {np.arange(40.0)}"))
    with pytest.raises(OSError) as info:
        (tmp_path / "a_file").write_text("x")
        (tmp_path / "a_file" / "sub").mkdir()
    assert one_line(info.value) == f"cannot use {tmp_path / 'a_file' / 'sub'}: Not a directory"


@pytest.mark.parametrize("ns", ["", "robot1", "/robot1", "/a/b_c"])
def test_valid_namespaces_pass(ns):
    assert check_namespace(ns) == ns


@pytest.mark.parametrize("ns", ["bad ns!", "/a/", "1robot"])
def test_invalid_namespace_is_a_one_line_value_error(ns):
    with pytest.raises(ValueError, match="not a valid ROS namespace") as info:
        check_namespace(ns)
    assert "\n" not in str(info.value) and repr(ns) in str(info.value)


def test_number_arg_bounds_and_messages():
    import argparse

    import pytest

    from hsnn_perception.tools.errors import number_arg

    assert number_arg(int, 1)("3") == 3
    assert number_arg(float, 0)("0") == 0.0
    assert number_arg(float, 0, finite=False)("inf") == float("inf")
    for parse, text, message in (
        (number_arg(int, 1), "0", "must be >= 1, got 0"),
        (number_arg(int, 0), "x", "'x' is not an integer"),
        (number_arg(float, 0, above=True), "0", "must be a finite number > 0, got 0"),
        (number_arg(float, 0), "inf", "must be a finite number >= 0, got inf"),
        (number_arg(float, 0, finite=False), "nan", "must be >= 0, got nan"),
        (number_arg(float, 0), "one", "'one' is not a number"),
    ):
        with pytest.raises(argparse.ArgumentTypeError, match=message):
            parse(text)
