"""What a run prints: labelled progress lines, or a live bar when the driver has a terminal."""
from __future__ import annotations

from genflow.train.progress import ELAPSED, RATE, TOTAL, ProgressPrinter, clock, progress_line, progress_mode, run_label


def test_line_names_the_run_and_where_it_is():
    row = {"step": 350, "epoch": 3, "D_loss": 0.61234, "G_loss": 1.9, RATE: 27.3, TOTAL: 2000, ELAPSED: 12.8}
    assert progress_line(run_label("gan_digits", 1), 350, row) == (
        "[gan_digits seed 1] step 350/2000 (17 %) 0:13 elapsed, ETA 1:00 | D_loss=0.6123 G_loss=1.9 | 27.3 steps/s")
    assert run_label("gan_ring8", 0, trial="3f2a1c0e") == "gan_ring8 trial 3f2a1c0e seed 0"
    assert clock(3725) == "1:02:05" and clock(59.6) == "1:00"


def test_mode_follows_the_terminal_unless_told(monkeypatch):
    monkeypatch.delenv("GENFLOW_PROGRESS", raising=False)
    assert progress_mode() == "lines"  # pytest's stdout is no terminal
    monkeypatch.setenv("GENFLOW_PROGRESS", "bar")
    assert progress_mode() == "bar"


class FakeBar:
    def __init__(self, desc, total):
        self.desc, self.total, self.n, self.closed = desc, total, 0, False

    def update(self, n):
        self.n += n

    def set_description(self, desc):
        self.desc = desc

    def close(self):
        self.closed = True


def test_a_bar_replaces_the_lines(capsys):
    made = []

    def make_bar(desc, total):
        made.append(FakeBar(desc, total))
        return made[-1]

    printer = ProgressPrinter("vae_digits seed 2", bar=make_bar)
    for step in (50, 100):
        printer.show(step, {"step": step, "loss": 24.5, TOTAL: 100, RATE: 80.0, ELAPSED: 1.0})
    [bar] = made
    assert bar.total == 100 and bar.n == 100 and bar.closed  # the last step closes it
    assert bar.desc == "vae_digits seed 2 loss=24.5"
    assert capsys.readouterr().out == ""
