"""The training curves' figure says what each line is."""

from bntt_snntorch.plots import plot_training_curves

ROWS = [
    {"epoch": e, "train_loss": 1.0 / e + 0.3, "test_loss": 1.0 / e, "train_acc": 0.5 + e / 10, "test_acc": 0.5 + e / 9}
    for e in (1, 2, 3)
]


def _loss_legend(fig) -> list[str]:
    return [text.get_text() for text in fig.axes[0].get_legend().get_texts()]


def test_the_training_loss_names_its_label_smoothing(tmp_path):
    fig = plot_training_curves(ROWS, tmp_path / "curves.png", label_smoothing=0.1)
    assert _loss_legend(fig) == ["train (label smoothing 0.1)", "test"]
    assert (tmp_path / "curves.png").stat().st_size > 0


def test_without_label_smoothing_the_lines_are_plain_cross_entropy(tmp_path):
    fig = plot_training_curves(ROWS, tmp_path / "curves.png")
    assert _loss_legend(fig) == ["train", "test"]
    assert fig.axes[0].get_ylabel() == "cross-entropy"


def test_a_one_epoch_run_has_only_whole_epochs_on_its_axis(tmp_path):
    fig = plot_training_curves(ROWS[:1], tmp_path / "curves.png")
    fig.canvas.draw()  # tick positions are chosen at draw time
    for ax in fig.axes:
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks)
