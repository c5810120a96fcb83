import sys


def pytest_terminal_summary(terminalreporter):
    """How much schemathesis fuzzed, when it ran (issue 8 asks for the figures)."""
    fuzz = sys.modules.get("tests.api.test_fuzz_device_api")
    if fuzz is None or not fuzz.REQUESTS:
        return
    span = fuzz.CLOCK["last"] - fuzz.CLOCK["first"]
    terminalreporter.write_line(
        f"schemathesis: {sum(fuzz.REQUESTS.values())} requests {dict(sorted(fuzz.REQUESTS.items()))}, "
        f"answers {dict(sorted(fuzz.STATUSES.items()))}, over {span:.1f} s "
        f"({fuzz.CLOCK['cpu']:.1f} s of CPU in the application)")
