"""Self-contained HTML run reports: tables plus matplotlib charts embedded as PNG data URIs."""
from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..io import atomic_open  # noqa: E402


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def metrics_chart(leaderboard: list[dict], metrics: list[str]):
    """Grouped bars: one group per metric, one bar per model, error bars = std over seeds."""
    fig, ax = plt.subplots(figsize=(7, 3.6))
    width = 0.8 / max(1, len(leaderboard))
    x = np.arange(len(metrics))
    for j, row in enumerate(leaderboard):
        means = [row["test"][m]["mean"] for m in metrics]
        stds = [row["test"][m]["std"] for m in metrics]
        ax.bar(x + j * width, means, width, yerr=stds, capsize=2, label=row["model"])
    ax.set_xticks(x + width * (len(leaderboard) - 1) / 2, metrics)
    ax.set_ylabel("test score")
    ax.legend(fontsize=8, ncols=2)
    ax.set_title("Test metrics (mean ± std over seeds)")
    return fig


def degree_chart(user_degree: np.ndarray, item_degree: np.ndarray, social_degree: np.ndarray | None = None):
    """Log-log complementary CDFs of user, item (and friend) degrees."""
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name, deg in (("users (items touched)", user_degree), ("items (users reached)", item_degree),
                      ("users (friends)", social_degree)):
        if deg is None or len(deg) == 0:
            continue
        d = np.sort(deg[deg > 0])
        ccdf = 1.0 - np.arange(len(d)) / len(d)
        ax.loglog(d, ccdf, marker=".", linestyle="none", markersize=3, label=name)
    ax.set_xlabel("degree")
    ax.set_ylabel("P(degree >= x)")
    ax.set_title("Degree distributions")
    ax.legend(fontsize=8)
    return fig


def action_chart(by_action: dict[str, int]):
    fig, ax = plt.subplots(figsize=(5, 3))
    names = list(by_action)
    ax.bar(names, [by_action[n] for n in names], color="tab:purple")
    ax.set_yscale("log")
    ax.set_ylabel("interactions (log)")
    ax.set_title("Action mix")
    return fig


def table_html(rows: list[dict], columns: list[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(r.get(c, '')))}</td>" for c in columns) + "</tr>"
                   for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_report(path: str | Path, title: str, sections: list[tuple[str, str]]) -> Path:
    """Write an HTML page; ``sections`` are (heading, html body) pairs. Figures may be passed as
    matplotlib figures inside a body via :func:`figure_html`."""
    style = ("body{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 8px;"
             "text-align:right}th{background:#f3f3f3}h1{font-size:22px}h2{font-size:17px;margin-top:1.6em}"
             "img{max-width:100%}")
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{style}</style></head><body><h1>{html.escape(title)}</h1>"]
    parts += [f"<h2>{html.escape(h)}</h2>{body}" for h, body in sections]
    parts.append("</body></html>")
    with atomic_open(path) as fh:
        fh.write("\n".join(parts))
    return Path(path)


def figure_html(fig, alt: str) -> str:
    return f"<img alt='{html.escape(alt)}' src='{_png(fig)}'>"
