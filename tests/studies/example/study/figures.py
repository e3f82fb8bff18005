"""The example study's figure: final recall per attribute, new against revised facts."""
from __future__ import annotations

from ...figures.table import figure
from ...io import read_parquets
from . import STUDY


def _final(args, s: dict) -> None:
    from ...figures.style import KNOWLEDGE, PALETTE, finish, pyplot

    plt, sns = pyplot()
    table = read_parquets(args.table).assign(knowledge=lambda t: t["type"].map(KNOWLEDGE))
    fig, ax = plt.subplots(figsize=(5, 2.6))
    sns.barplot(table, x="attribute", y="value", hue="knowledge", palette=PALETTE, ax=ax)
    ax.set_ylabel(s["example"]["metric"])
    finish(plt, fig, args.pdf, args.png)


FIGURES = {
    "example_final": figure(_final, "example: final recall per attribute", "final recall per attribute",
                            STUDY.title, "example", table="example_table", enabled="example.enabled"),
}
