"""PNG plot of training loss and validation mR per epoch."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on training machines
import matplotlib.pyplot as plt  # noqa: E402


def plot_history(history: list[dict], path: Path) -> Path:
    epochs = [row["epoch"] for row in history]
    figure, loss_axis = plt.subplots(figsize=(7, 4), dpi=110)
    loss_axis.plot(epochs, [row["train_loss"] for row in history], "o-", color="tab:blue", label="train loss")
    loss_axis.set_xlabel("epoch")
    loss_axis.set_ylabel("train loss", color="tab:blue")
    recall_axis = loss_axis.twinx()
    recall_axis.plot(epochs, [row["val_mR"] for row in history], "s-", color="tab:orange", label="validation mR")
    recall_axis.set_ylabel("validation mR (%)", color="tab:orange")
    figure.suptitle("HarMA training")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path
