"""HTML building blocks of the report: one page, inline CSS, images as data URIs, no script, no network."""

from __future__ import annotations

import base64
from html import escape

CSS = """
body { font-family: "DejaVu Sans", Helvetica, Arial, sans-serif; margin: 0 auto; max-width: 1180px;
       padding: 1.2em 2em 3em; color: #1d1d1d; line-height: 1.45; }
h1 { font-size: 1.7em; margin-bottom: 0.1em; }
h2 { border-bottom: 2px solid #d0d7de; padding-bottom: 0.2em; margin-top: 2.2em; }
h3 { margin-top: 1.6em; }
p.lead { color: #444; margin-top: 0.2em; }
table { border-collapse: collapse; margin: 0.6em 0 1em; font-size: 0.86em; }
th, td { border: 1px solid #d0d7de; padding: 0.25em 0.55em; text-align: left; vertical-align: top; }
th { background: #f3f5f7; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.fields td { overflow-wrap: anywhere; }
table.board td { white-space: nowrap; }
table.fields td:first-child { white-space: nowrap; font-weight: bold; background: #f3f5f7; }
tr:nth-child(even) td { background: #fafbfc; }
.scroll { overflow-x: auto; }
figure { margin: 1.2em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #e4e7ea; }
figcaption { font-size: 0.88em; color: #333; max-width: 60em; }
figcaption b { color: #000; }
dl.legend { font-size: 0.85em; display: grid; grid-template-columns: max-content 1fr; gap: 0.15em 1em; }
dl.legend dt { font-weight: bold; }
dl.legend dd { margin: 0; }
.gallery { display: flex; flex-wrap: wrap; gap: 1em; }
.pair { border: 1px solid #d0d7de; border-radius: 6px; padding: 0.5em; background: #fcfcfd; }
.pair .cells { display: flex; gap: 0.3em; }
.pair img { width: 220px; height: auto; }
.pair p { font-size: 0.82em; margin: 0.3em 0 0; max-width: 445px; }
.note { background: #fff8e1; border-left: 4px solid #f0b400; padding: 0.4em 0.8em; font-size: 0.9em; }
.muted { color: #666; font-size: 0.85em; }
code { font-size: 0.92em; background: #f3f5f7; padding: 0 0.2em; }
nav ul { columns: 2; font-size: 0.92em; }
"""


def page(title: str, body: list[str]) -> str:
    return (f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")


def png_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def heading(level: int, text: str, anchor: str | None = None) -> str:
    ident = f' id="{escape(anchor)}"' if anchor else ""
    return f"<h{level}{ident}>{escape(text)}</h{level}>"


def paragraph(text: str, css: str | None = None) -> str:
    cls = f' class="{css}"' if css else ""
    return f"<p{cls}>{escape(text)}</p>"


def figure(png: bytes, title: str, caption: str, files: list[str]) -> str:
    links = ", ".join(f"<code>{escape(f)}</code>" for f in files)
    return (f"<figure><img src=\"{png_uri(png)}\" alt=\"{escape(title)}\">"
            f"<figcaption><b>{escape(title)}.</b> {escape(caption)} "
            f"<span class=\"muted\">Files: {links}.</span></figcaption></figure>")


def _cell(value, numeric: bool) -> str:
    text = "" if value is None else str(value)
    return f'<td class="num">{escape(text)}</td>' if numeric else f"<td>{escape(text)}</td>"


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def table(headers: list[str], rows: list[list], titles: dict[str, str] | None = None, numeric: bool = True,
          css: str | None = None) -> str:
    """A table; cells that read as numbers are right-aligned (numeric); `titles` become header tooltips."""
    titles = titles or {}
    head = "".join(f'<th title="{escape(titles[h])}">{escape(h)}</th>' if h in titles else f"<th>{escape(h)}</th>"
                   for h in headers)
    body = "".join("<tr>" + "".join(_cell(v, numeric and _is_number(str(v))) for v in row) + "</tr>"
                   for row in rows)
    cls = f' class="{css}"' if css else ""
    return f'<div class="scroll"><table{cls}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def definitions(items: list[tuple[str, str]]) -> str:
    body = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in items)
    return f'<dl class="legend">{body}</dl>'


def note(text: str) -> str:
    return f'<p class="note">{escape(text)}</p>'


def pair(truth_png: bytes, predicted_png: bytes, caption: str) -> str:
    return (f'<div class="pair"><div class="cells"><img src="{png_uri(truth_png)}" alt="truth cell">'
            f'<img src="{png_uri(predicted_png)}" alt="predicted cell"></div><p>{escape(caption)}</p></div>')


def gallery(items: list[str]) -> str:
    return '<div class="gallery">' + "".join(items) + "</div>"


def contents(items: list[tuple[str, str]]) -> str:
    links = "".join(f'<li><a href="#{escape(a)}">{escape(t)}</a></li>' for a, t in items)
    return f"<nav><ul>{links}</ul></nav>"
