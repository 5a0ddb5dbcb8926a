"""A static site of runs (``raml export --site DIR [SELECTION ...]``): an index page (question, model,
correct?, L̂ start → end, steps; sortable and searchable in plain JS) and one page per run with
every linked view (``backend.plots.run_page``: the same template and script as the one-file export
and the notebook widget). It needs no server: every page opens from ``file://`` as from any static
host, since nothing is fetched (each page carries its data; scripts are plain ``<script src>``).

Layout of ``DIR``::

    index.html              the table of runs
    runs/<key>.html         one page per run (its data inline)
    assets/plotly.min.js    plotly.js, once (copied from the installed plotly package; absent with cdn)
    assets/raml-run.js      the view script, once
    raml-site.json          what was exported (the marker that lets a later export replace the folder)

SELECTION (``select_runs``): run keys (any unique prefix of at least 4 characters, as everywhere),
``field=value`` filters and question files as ``raml stats`` takes them. The runs named by keys (all
runs when none is named) are narrowed by every filter (AND).
"""

from __future__ import annotations

import html
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from backend.errors import CacheError, InputError
from backend.export.view import gather_run_view
from backend.plots.run_page import check_plotlyjs_mode, plotlyjs_cdn_url, run_js, run_page_html
from backend.store import atomic
from backend.store.keys import normalize_prefix

log = logging.getLogger(__name__)

MARKER = "raml-site.json"
ASSETS = "assets"
RUNS = "runs"
PLOTLY_FILE = "plotly.min.js"
RUN_JS_FILE = "raml-run.js"
SITE_VERSION = 1


@dataclass
class SiteReport:
    """What ``export_site`` wrote: the index, one page per run, the assets, their sizes in bytes."""

    root: Path
    index: Path
    pages: dict[str, Path] = field(default_factory=dict)  # key -> page
    assets: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # one line per run left out (damaged)

    def sizes(self) -> dict:
        pages = {key: path.stat().st_size for key, path in self.pages.items()}
        assets = {path.name: path.stat().st_size for path in self.assets}
        index = self.index.stat().st_size
        return {
            "index": index,
            "pages": pages,
            "assets": assets,
            "total": index + sum(pages.values()) + sum(assets.values()) + (self.root / MARKER).stat().st_size,
        }


def _is_key(item: str) -> bool:
    try:
        normalize_prefix(item)
    except InputError:
        return False
    return True


def select_runs(store, selection: list[str], question_field: str = "question") -> list[str]:
    """Full keys of the runs ``selection`` picks, in the library's order (newest first).

    Items that are run keys or key prefixes name runs (``RunStore.resolve``: one-line errors for an
    ambiguous or unknown prefix); ``field=value`` filters and question files narrow them
    (``backend.analysis.dataset.selection``); no key: every healthy run. A damaged run named by
    key stays selected (``export_site`` leaves it out with one line, or refuses it when alone).
    """
    from backend.analysis.dataset.selection import is_filter, select_keys
    from backend.store import schema

    named: list[str] = []
    filters: list[str] = []
    for item in selection:
        if not is_filter(item) and not Path(item).exists() and _is_key(item):
            named.append(store.resolve(item))
        else:
            filters.append(item)
    runs = store.list_runs()
    if named:
        wanted = set(named)
        runs = runs[runs["key"].isin(wanted)]
    else:
        runs = runs[runs["status"] == schema.STATUS_OK]
    keys = select_keys(runs, filters, question_field) if filters else runs["key"].tolist()
    return list(dict.fromkeys(keys))


def _prepare(out: Path) -> None:
    """``out`` as an empty folder or a site written before; anything else is refused in one line."""
    if out.exists() and not out.is_dir():
        raise InputError(f"site folder {out} is a file; give a folder (new or empty)")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise InputError(f"site folder {out} is not empty and holds no {MARKER}: give a new or empty folder")
    for sub in (out, out / ASSETS, out / RUNS):
        try:
            sub.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"cannot make site folder {sub}: {atomic.os_reason(exc)}") from None


def _plotly_package_file() -> Path:
    """plotly.min.js as the installed plotly package ships it."""
    import plotly

    return Path(plotly.__file__).resolve().parent / "package_data" / PLOTLY_FILE


def export_site(
    store,
    keys: list[str],
    out_dir: str | Path,
    *,
    plotlyjs: str = "inline",
    progress: Callable[[int, int], None] | None = None,
) -> SiteReport:
    """Write the site of the runs ``keys`` (full keys) of ``store`` into ``out_dir``.

    ``plotlyjs``: ``inline`` copies plotly.js into ``assets/`` once (works offline); ``cdn`` loads it
    from cdn.plot.ly instead. Each file is written atomically; pages of a site written there before
    whose runs are no longer selected are removed, so the index and the folder agree.
    """
    check_plotlyjs_mode(plotlyjs)
    out = Path(out_dir)
    _prepare(out)
    report = progress or (lambda done, total: None)
    assets: list[Path] = []
    if plotlyjs == "inline":
        assets.append(atomic.write_bytes(out / ASSETS / PLOTLY_FILE, _plotly_package_file().read_bytes()))
        plotly_script = f'<script src="../{ASSETS}/{PLOTLY_FILE}" charset="utf-8"></script>'
    else:
        stale = out / ASSETS / PLOTLY_FILE
        if stale.is_file():
            stale.unlink()
        plotly_script = f'<script src="{plotlyjs_cdn_url()}" charset="utf-8"></script>'
    assets.append(atomic.write_text(out / ASSETS / RUN_JS_FILE, run_js()))
    run_script = f'<script src="../{ASSETS}/{RUN_JS_FILE}" charset="utf-8"></script>'

    pages: dict[str, Path] = {}
    rows: list[dict] = []
    skipped: list[str] = []
    for done, key in enumerate(keys):
        report(done, len(keys))
        try:
            run = store.open(key)
        except CacheError as exc:
            if len(keys) == 1:
                raise
            skipped.append(str(exc))
            log.warning("site: left out %s", exc)
            continue
        view = gather_run_view(run, store)
        page = run_page_html(view, plotly_script=plotly_script, run_script=run_script, index_href="../index.html")
        pages[key] = atomic.write_text(out / RUNS / f"{key}.html", page)
        rows.append(index_row(view, f"{RUNS}/{key}.html"))
    report(len(keys), len(keys))
    for old in (out / RUNS).glob("*.html"):
        if old.stem not in pages:
            old.unlink()
    index = atomic.write_text(out / "index.html", index_html(rows, plotlyjs=plotlyjs, skipped=len(skipped)))
    atomic.write_json(
        out / MARKER,
        {
            "version": SITE_VERSION,
            "created": time.time(),
            "cache": str(store.root),
            "plotlyjs": plotlyjs,
            "runs": list(pages),
            "skipped": skipped,
        },
        indent=1,
    )
    return SiteReport(root=out, index=index, pages=pages, assets=assets, skipped=skipped)


def index_row(view, href: str) -> dict:
    """One row of the index: what the table shows and sorts by."""
    h = view.header
    return {
        "key": view.key,
        "href": href,
        "question": h["question"],
        "model": h["model"],
        "correct": h["correct"],
        "predicted": h["predicted"],
        "answer": h["answer"],
        "initial_loss": h["initial_loss"],
        "final_loss": h["final_loss"],
        "n_steps": h["n_steps"],
        "n_tokens": h["n_tokens"],
    }


INDEX_CSS = """
body { font-family: Inter, "Segoe UI", Helvetica, Arial, sans-serif; color: #1f2937; margin: 0; background: #fff; }
header { padding: 16px 24px 8px; border-bottom: 1px solid #e2e8f0; }
header h1 { font-size: 1.3rem; margin: 0 0 6px; }
.bar { display: flex; gap: 12px; align-items: center; padding: 10px 24px; }
#raml-search { flex: 0 1 32em; font-size: 0.95rem; padding: 5px 10px; border: 1px solid #cbd5e1; border-radius: 6px; }
#raml-count, .note { color: #64748b; font-size: 0.88rem; }
table { border-collapse: collapse; margin: 0 24px 24px; width: calc(100% - 48px); font-size: 0.92rem; }
th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid #f1f5f9; vertical-align: top; }
th button { font: inherit; font-weight: 600; color: #334155; background: none; border: 0; padding: 0; cursor: pointer; }
th[aria-sort="ascending"] button::after { content: " ▲"; } th[aria-sort="descending"] button::after { content: " ▼"; }
th, td.v { white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.q a { color: #1f2937; text-decoration: none; } td.q a:hover { text-decoration: underline; color: #2a3f7a; }
td code { color: #64748b; }
.ok { color: #166534; font-weight: 600; } .bad { color: #991b1b; font-weight: 600; } .na { color: #94a3b8; }
tr[hidden] { display: none; }
"""

INDEX_JS = r"""
(function () {
  'use strict';
  const table = document.getElementById('raml-runs');
  const body = table.tBodies[0];
  const search = document.getElementById('raml-search');
  const count = document.getElementById('raml-count');
  const heads = Array.prototype.slice.call(table.tHead.rows[0].cells);
  function filter() {
    const words = search.value.toLowerCase().split(/\s+/).filter(Boolean);
    let shown = 0;
    for (const row of body.rows) {
      const hay = row.dataset.search;
      const ok = words.every(function (w) { return hay.indexOf(w) >= 0; });
      row.hidden = !ok;
      if (ok) shown++;
    }
    count.textContent = shown + ' of ' + body.rows.length + ' run' + (body.rows.length === 1 ? '' : 's');
  }
  function value(row, col, type) {
    const v = row.cells[col].dataset.value;
    if (type !== 'number') return v;
    const x = parseFloat(v);
    return isNaN(x) ? -Infinity : x;
  }
  function sortBy(col) {
    const th = heads[col], type = th.dataset.type;
    const dir = th.getAttribute('aria-sort') === 'ascending' ? -1 : 1;
    const rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      const x = value(a, col, type), y = value(b, col, type);
      const c = type === 'number' ? (x < y ? -1 : (x > y ? 1 : 0)) : String(x).localeCompare(String(y));
      return c * dir;
    });
    for (const row of rows) body.appendChild(row);
    for (const h of heads) h.removeAttribute('aria-sort');
    th.setAttribute('aria-sort', dir === 1 ? 'ascending' : 'descending');
  }
  heads.forEach(function (th, col) {
    const b = th.querySelector('button');
    if (b) b.addEventListener('click', function () { sortBy(col); });
  });
  search.addEventListener('input', filter);
  filter();
  window.ramlSortBy = sortBy;
})();
"""

COLUMNS = (  # (header, type, title)
    ("Question", "text", "the question (click to open the run)"),
    ("Model", "text", "the scoring model"),
    ("Correct?", "number", "the model's final answer against the reference"),
    ("L̂ start → end", "number", "answer loss before thinking and after the whole trajectory (nats); sorts by the end"),
    ("Steps", "number", "steps of the trajectory"),
    ("Tokens", "number", "trajectory tokens"),
    ("Run", "text", "run key (12 characters: any unique prefix works in raml and the app)"),
)


def _row_html(row: dict) -> str:
    esc = html.escape
    correct = row["correct"]
    verdict = (
        '<span class="na" title="no reference answer">—</span>'
        if correct is None
        else ('<span class="ok">✓ correct</span>' if correct else '<span class="bad">✗ incorrect</span>')
    )
    correct_value = -1 if correct is None else int(bool(correct))
    question = " ".join(str(row["question"]).split())
    shown = question if len(question) <= 160 else question[:159] + "…"
    hay = " ".join([question, str(row["model"]), row["key"], str(row["answer"]), str(row["predicted"])]).lower()
    cells = [
        f'<td class="q" data-value="{esc(question)}"><a href="{esc(row["href"])}">{esc(shown)}</a></td>',
        f'<td data-value="{esc(str(row["model"]))}">{esc(str(row["model"]))}</td>',
        f'<td class="v" data-value="{correct_value}">{verdict}</td>',
        f'<td class="num" data-value="{row["final_loss"]:.6f}">{row["initial_loss"]:.3f} → {row["final_loss"]:.3f}</td>',
        f'<td class="num" data-value="{row["n_steps"]}">{row["n_steps"]}</td>',
        f'<td class="num" data-value="{row["n_tokens"]}">{row["n_tokens"]}</td>',
        f'<td data-value="{esc(row["key"])}"><code>{esc(row["key"][:12])}</code></td>',
    ]
    return f'<tr data-key="{esc(row["key"])}" data-search="{esc(hay)}">{"".join(cells)}</tr>'


def index_html(rows: list[dict], *, plotlyjs: str = "inline", skipped: int = 0) -> str:
    """The index page: one table row per run (rendered here, so it reads without script too)."""
    heads = "".join(
        f'<th data-type="{kind}" title="{html.escape(title)}"><button type="button">{html.escape(name)}</button></th>'
        for name, kind, title in COLUMNS
    )
    body = "\n".join(_row_html(r) for r in rows)
    notes = []
    if skipped:
        notes.append(f"{skipped} damaged run{'s' if skipped != 1 else ''} left out")
    if plotlyjs == "cdn":
        notes.append("run pages load plotly.js from its CDN (network needed)")
    note = f'<span class="note">{html.escape(" · ".join(notes))}</span>' if notes else ""
    data = json.dumps([r["key"] for r in rows]).replace("</", "<\\/")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>RaML Explorer · {len(rows)} runs</title>
<style>{INDEX_CSS}</style>
</head><body>
<header><h1>RaML Explorer · {len(rows)} run{"s" if len(rows) != 1 else ""}</h1>
<div class="note">Each run: the answer's loss L̂ as the model reads its own reasoning, the path of the steps
and what each layer predicts, moved by one cursor (←/→, Home/End, the slider, clicks on a chart).</div></header>
<div class="bar"><input type="search" id="raml-search" placeholder="Search question, model, answer or key"
aria-label="search runs"><span id="raml-count"></span>{note}</div>
<table id="raml-runs"><thead><tr>{heads}</tr></thead>
<tbody>
{body}
</tbody></table>
<script type="application/json" id="raml-keys">{data}</script>
<script>{INDEX_JS}</script>
</body></html>
"""
