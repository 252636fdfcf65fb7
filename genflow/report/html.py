"""The comparison report as one HTML file that opens anywhere: no scripts, no external files.

Every picture is embedded as a base64 data URI and the styling is inline, so the file can
be mailed, attached to a PR or opened from a DVC remote as it is.
"""
from __future__ import annotations

import base64
import html
import re
from pathlib import Path

from genflow.evaluate.gallery import PICTURES, gallery_dir
from genflow.evaluate.pictures import interpolation_png

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1400px; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
tr.floor td { font-style: italic; background: #f4f4f4; }
td.best { font-weight: bold; background: #e8f4e8; }
figure { display: inline-block; margin: 0.5em 1em 1em 0; vertical-align: top; }
figcaption { font-size: 0.8em; color: #555; max-width: 40em; }
img { max-width: 100%; }
.samples img { image-rendering: pixelated; width: 256px; }
.strip img { image-rendering: pixelated; }
"""


def data_uri(png: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii")


def _markdown_inline(text: str) -> str:
    """The protocol paragraphs are written once, in Markdown: **bold** and `code` suffice here."""
    text = html.escape(text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    text = re.sub(r"\*(.+?)\*", r"<em>\1</em>", text)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)


def _figure(caption: str, png: Path, css: str = "") -> str:
    return (f'<figure class="{css}"><img src="{data_uri(png)}" alt="{html.escape(caption)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _table(block) -> str:
    head = ["model", "family", "steps", "seeds"] + [label for _, _, label, _ in block.columns]
    rows = ["<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"]
    for name, spec, metrics in block.rows:
        cells = [name, spec.model + (" (cond.)" if getattr(spec, "c_dim", 0) else ""), str(spec.train.steps),
                 str(metrics.get("n_seeds", 1))]
        row = "".join(f"<td>{html.escape(c)}</td>" for c in cells)
        for key, _, _, _ in block.columns:
            best = block.rank[key].get(name) == 1 and len(block.rank[key]) > 1
            row += f'<td{" class=best" if best else ""}>{html.escape(block.cell(key, name))}</td>'
        rows.append(f"<tr>{row}</tr>")
    for label, values in block.references.items():  # the real-data floor, or the task's trivial method
        cells = "".join(f"<td>{values[k]:.4g}</td>" if values.get(k) is not None else "<td></td>"
                        for k, _, _, _ in block.columns)
        rows.append(f'<tr class="floor"><td>{html.escape(label)}</td><td></td><td></td><td></td>{cells}</tr>')
    return '<table class="comparison">' + "\n".join(rows) + "</table>"


def _pictures(block, samples_dir: Path) -> list[str]:
    """Every model's samples, then its latent interpolation (one row per slerp path between two
    random latents; for 2-D data the decoded paths over the true means)."""
    samples = {name: samples_dir / f"{name}.png" for name, _, _ in block.rows}
    paths = {name: interpolation_png(png) for name, png in samples.items() if interpolation_png(png).exists()}
    parts = [f"<h3>{'Samples' if block.task == 'generate' else 'What the models do'}</h3><div>"]
    parts += [_figure(f"{name}: {block.picture_caption}", png, "samples") for name, png in samples.items()
              if png.exists()]
    parts.append("</div>")
    if paths:
        parts.append("<h3>Latent interpolation</h3><div>")
        parts += [_figure(f"{name}: decoded along slerp paths between random latent pairs (images: one row a "
                          "path)", png, "strip") for name, png in paths.items()]
        parts.append("</div>")
    return parts + _gallery(samples)


def _gallery(samples: dict[str, Path]) -> list[str]:
    parts = []
    for file, _, heading in PICTURES:  # each of the gallery's pictures under its own heading
        found = {name: gallery_dir(png) / file for name, png in samples.items() if (gallery_dir(png) / file).exists()}
        if found:
            parts += [f"<h3>{heading}</h3><div>"] + [_figure(name, png) for name, png in found.items()] + ["</div>"]
    return parts


def render_html(blocks: list, protocol: list[str], sweeps: list[tuple[str, Path]], spaces: list[dict[str, str]],
                samples_dir: Path) -> str:
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             "<title>genflow model comparison</title>", f"<style>{STYLE}</style></head><body>",
             "<h1>genflow model comparison</h1>"]
    parts += [f"<p>{_markdown_inline(p)}</p>" for p in protocol if p]
    for block in blocks:
        parts += [f"<h2>{html.escape(block.title)} <small>(baseline: {html.escape(block.baseline_label)})</small></h2>"]
        parts += [f"<p>{_markdown_inline(block.note)}</p>"] if block.note else []
        parts += ["<ul>" + "".join(f"<li>{_markdown_inline(line)}</li>" for line in block.summary_lines) + "</ul>"] \
            if block.summary_lines else []
        parts.append(_table(block))
        parts += [_figure(caption, png) for caption, png in block.plots]
        parts += _pictures(block, samples_dir)
    if sweeps:
        parts.append("<h2>Sweeps</h2>")
        parts += [_figure(caption, png) for caption, png in sweeps]
    if spaces:
        parts.append("<h2>Feature spaces</h2><table><tr><th>dataset</th><th>kind</th><th>test accuracy</th>"
                     "<th>weights sha256</th></tr>")
        parts += [f"<tr><td>{html.escape(r['dataset'])}</td><td>{html.escape(r['kind'])}</td>"
                  f"<td>{r['accuracy']}</td><td><code>{r['sha256']}</code></td></tr>" for r in spaces]
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"

