"""The run's rules under CI (tests/conftest.py), on a suite of their own:
with CI=true a skip fails the run, so a green build means everything ran;
every run says how many system tests ran; property tests are derandomized."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

CONFTEST = (Path(__file__).parents[1] / "conftest.py").read_text()
SUITE = {
    "tests/system/test_box.py": """
import os
import pytest

def test_runs():
    pass

@pytest.mark.skipif(os.environ.get("PRETEND_NO_ROOT") == "1", reason="needs root")
def test_needs_root():
    pass
""",
    "tests/unit/test_tool.py": """
import pytest

def test_without_the_tool():
    pytest.skip("the tool is missing")

@pytest.mark.xfail(reason="a known bug, stated")
def test_known_bug():
    assert False
""",
}


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(CONFTEST)
    for path, text in SUITE.items():
        target = pytester.path / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    return pytester


def test_under_ci_a_skip_fails_the_run(suite, monkeypatch):
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("PRETEND_NO_ROOT", "1")
    result = suite.runpytest_subprocess("-p", "no:cacheprovider")
    # A skip in setup (skipif, a fixture's skip) turns into an error there.
    result.assert_outcomes(passed=1, failed=1, errors=1, xfailed=1)
    result.stdout.fnmatch_lines_random([
        "*skipped under CI=true*needs root*", "*skipped under CI=true*the tool is missing*"])
    assert result.ret != 0


def test_under_ci_a_module_skipped_at_collection_stops_the_run(suite, monkeypatch):
    suite.makepyfile(test_module="""
import pytest

pytest.importorskip("a_module_nobody_installed")

def test_never_collected():
    pass
""")
    monkeypatch.setenv("CI", "true")
    result = suite.runpytest_subprocess("-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["*skipped under CI=true*a_module_nobody_installed*"])
    assert result.ret == pytest.ExitCode.INTERRUPTED


def test_outside_ci_a_skip_is_a_skip(suite, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("PRETEND_NO_ROOT", "1")
    result = suite.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, skipped=2, xfailed=1)


def test_the_run_says_how_many_system_tests_ran(suite, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("PRETEND_NO_ROOT", "1")
    suite.runpytest_subprocess("-p", "no:cacheprovider").stdout.fnmatch_lines(
        ["system tests run: 1"])
    monkeypatch.setenv("PRETEND_NO_ROOT", "0")
    suite.runpytest_subprocess("-p", "no:cacheprovider").stdout.fnmatch_lines(
        ["system tests run: 2"])


def test_under_ci_property_tests_are_derandomized(suite, monkeypatch):
    suite.makepyfile(test_prop="""
from hypothesis import settings

def test_profile():
    assert settings.default.derandomize is True
    assert settings.default.database is None
""")
    monkeypatch.setenv("CI", "true")
    suite.runpytest_subprocess("-p", "no:cacheprovider", "test_prop.py").assert_outcomes(
        passed=1)


def test_no_two_test_files_share_a_name():
    # pytest imports test modules by basename (rootdir-relative, no
    # packages): a second tests/**/test_x.py stops the whole run at collection.
    tests = Path(__file__).parents[1]
    names: dict[str, list[str]] = {}
    for path in tests.rglob("test_*.py"):
        names.setdefault(path.name, []).append(str(path.relative_to(tests)))
    assert {name: paths for name, paths in names.items() if len(paths) > 1} == {}
