"""Library-level calls of the Python bindings: version, threads, errors."""

import re

import pytest

import coppice


def test_version_matches_header():
    header = open(__file__.rsplit("/bindings/", 1)[0] + "/include/coppice.h").read()
    major = int(re.search(r"#define COPPICE_VERSION_MAJOR (\d+)", header).group(1))
    minor = int(re.search(r"#define COPPICE_VERSION_MINOR (\d+)", header).group(1))
    patch = int(re.search(r"#define COPPICE_VERSION_PATCH (\d+)", header).group(1))
    assert coppice.version() == f"{major}.{minor}.{patch}"
    assert coppice.version_number() == major * 10000 + minor * 100 + patch


def test_threads_round_trip():
    coppice.set_threads(1)
    assert coppice.get_threads() == 1
    coppice.set_threads(2)
    assert coppice.get_threads() == 2


def test_negative_threads_raise_with_status_and_message():
    with pytest.raises(coppice.CoppiceError) as info:
        coppice.set_threads(-3)
    assert info.value.status == 1
    assert info.value.name == "COPPICE_INVALID_ARGUMENT"
    assert "-3" in str(info.value)


@pytest.mark.parametrize("threads", [1025, 2**31 - 1])
def test_absurd_thread_counts_are_refused(threads):
    coppice.set_threads(2)
    with pytest.raises(coppice.CoppiceError, match="0...1024") as info:
        coppice.set_threads(threads)
    assert info.value.name == "COPPICE_INVALID_ARGUMENT"
    assert coppice.get_threads() == 2  # unchanged


def test_idle_spin():
    assert coppice.lib.coppice_set_idle_spin(0) == 0
    assert coppice.lib.coppice_set_idle_spin(-1) == 1  # COPPICE_INVALID_ARGUMENT
    assert coppice.lib.coppice_set_idle_spin(200) == 0  # back to OpenMP's default


def test_wrong_type_is_a_python_error_not_a_crash():
    with pytest.raises(TypeError):
        coppice.set_threads("two")
