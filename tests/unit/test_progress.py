"""The long commands' progress bar: one redrawn line on a terminal; a line at
each tenth of the way elsewhere (a log stays short), and where it ended."""

from __future__ import annotations

import io

from orderbus.progress import ProgressBar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_in_a_log_it_writes_a_line_a_tenth_and_the_end() -> None:
    log = io.StringIO()
    bar = ProgressBar("retried", 1000, log)
    for done in range(1, 1001):
        bar.update(done)
    bar.close()
    lines = log.getvalue().splitlines()
    assert len(lines) == 11  # 0% (the first), 10% ... 100%
    assert lines[0] == "retried [------------------------]    1/1000   0%"
    assert lines[-1] == "retried [########################] 1000/1000 100%"


def test_on_a_terminal_it_redraws_one_line() -> None:
    screen = Terminal()
    bar = ProgressBar("published", 4, screen)
    for done in range(1, 5):
        bar.update(done)
    bar.close()
    text = screen.getvalue()
    assert text.count("\r") == 4 and text.endswith("4/4 100%\n") and text.count("\n") == 1
    assert "\rpublished [############------------] 2/4  50%" in text


def test_less_to_do_than_expected_ends_at_what_there_was() -> None:
    log = io.StringIO()
    bar = ProgressBar("read again", 500, log)
    bar.update(2)
    bar.ended_at(3)
    bar.close()
    assert log.getvalue().splitlines()[-1] == "read again [########################] 3/3 100%"
