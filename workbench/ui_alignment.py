"""Per-utterance HTML with the errors coloured: substitutions, insertions and deletions.

Alignments come from ``eval.metrics.score_utterance`` on the normalized units, with the run's own
normalizer options and metric, so the colours agree with the counts in the run folder.
"""

from __future__ import annotations

from html import escape

import pandas as pd

from eval.metrics import score_utterance
from eval.normalize import NormalizerOptions

COLORS = {"sub": "#f4b400", "ins": "#4285f4", "del": "#db4437"}
STYLES = {
    "sub": f"background:{COLORS['sub']}55;border-bottom:2px solid {COLORS['sub']}",
    "ins": f"background:{COLORS['ins']}40;border-bottom:2px solid {COLORS['ins']}",
    "del": f"color:{COLORS['del']};text-decoration:line-through",
}
TABLE_STYLE = "border-collapse:collapse;width:100%;font-size:14px"
CELL_STYLE = "border-bottom:1px solid #8884;padding:4px 6px;vertical-align:top;text-align:left"
MAX_ROWS = 300


def legend() -> str:
    return ("<div class='alignment-legend' style='margin:4px 0'>"
            f"<span style='{STYLES['sub']}'>substitution</span> (reference on hover) · "
            f"<span style='{STYLES['ins']}'>insertion</span> · "
            f"<span style='{STYLES['del']}'>deletion</span> (missing reference unit)</div>")


def is_word(unit: str | None) -> bool:
    return bool(unit) and unit[0].isascii()


def join_units(units: list[tuple[str | None, str]]) -> str:
    """Concatenate (unit, html) pairs; a space only between two Latin words."""
    out, previous = [], None
    for unit, html in units:
        if is_word(previous) and is_word(unit):
            out.append(" ")
        out.append(html)
        previous = unit
    return "".join(out)


def alignment_html(alignment: list[tuple[str, str | None, str | None]]) -> str:
    """The hypothesis with its errors marked; deleted reference units shown struck through."""
    units = []
    for op, ref, hyp in alignment:
        if op == "equal":
            units.append((hyp, escape(hyp)))
        elif op == "sub":
            units.append((hyp, f"<span class='sub' title='reference: {escape(ref)}' "
                               f"style='{STYLES['sub']}'>{escape(hyp)}</span>"))
        elif op == "ins":
            units.append((hyp, f"<span class='ins' style='{STYLES['ins']}'>{escape(hyp)}</span>"))
        else:
            units.append((ref, f"<span class='del' style='{STYLES['del']}'>{escape(ref)}</span>"))
    return join_units(units)


def normalizer_of(manifest: dict) -> NormalizerOptions:
    known = NormalizerOptions.__dataclass_fields__
    return NormalizerOptions(**{k: v for k, v in (manifest.get("normalizer") or {}).items() if k in known})


def marked_hypothesis(reference, hypothesis, normalizer: NormalizerOptions, metric: str) -> str:
    score = score_utterance(str(reference or ""), str(hypothesis or ""), normalizer, metric)
    return alignment_html(score.alignment)


def table_html(header: list[str], rows: list[list[str]], note: str = "") -> str:
    head = "".join(f"<th style='{CELL_STYLE}'>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td style='{CELL_STYLE}'>{cell}</td>" for cell in row) + "</tr>"
                   for row in rows)
    return f"{legend()}<table style='{TABLE_STYLE}'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{note}"


def truncation_note(shown: int, total: int) -> str:
    return f"<p><i>showing {shown} of {total} utterances (most errors first)</i></p>" if shown < total else ""


def utterances_html(rows: pd.DataFrame, manifest: dict, metric: str, max_rows: int = MAX_ROWS) -> str:
    """One row per utterance, most errors first: id, reference, marked hypothesis, errors / N."""
    if rows.empty:
        return "<p>no utterances</p>"
    normalizer = normalizer_of(manifest)
    failed = rows["error"].map(lambda e: isinstance(e, str) and bool(e))
    ordered = rows.assign(failed=failed).sort_values(["failed", "errors"], ascending=False)
    shown = ordered.head(max_rows)
    cells = []
    for row in shown.itertuples():
        if row.failed:
            hypothesis, counts = f"<b style='color:{COLORS['del']}'>failed:</b> {escape(row.error)}", "-"
        else:
            hypothesis = marked_hypothesis(row.reference, row.hypothesis, normalizer, metric)
            counts = f"{int(row.errors)} / {int(row.n)}"
        cells.append([escape(str(row.id)), escape(str(row.reference)), hypothesis, counts])
    return table_html(["id", "reference", "hypothesis", "errors / N"], cells,
                      truncation_note(len(shown), len(rows)))


def differences_html(diff: pd.DataFrame, manifest: dict, metric: str, names: tuple[str, str], shared: int,
                     max_rows: int = MAX_ROWS) -> str:
    """Utterances where two runs differ (of the ``shared`` ones both ran), both hypotheses marked against the
    reference."""
    if diff.empty:
        return f"<p>the two runs agree on every shared utterance ({shared})</p>"
    normalizer = normalizer_of(manifest)
    shown = diff.head(max_rows)
    cells = [[escape(str(row.id)), escape(str(row.reference)),
              marked_hypothesis(row.reference, row.hypothesis_a, normalizer, metric),
              marked_hypothesis(row.reference, row.hypothesis_b, normalizer, metric),
              f"{int(row.errors_a)} → {int(row.errors_b)} ({int(row.delta_errors):+d})"]
             for row in shown.itertuples()]
    note = truncation_note(len(shown), len(diff))
    return (f"<p>{len(diff)} of the {shared} shared utterances differ</p>"
            + table_html(["id", "reference", f"A: {names[0]}", f"B: {names[1]}", "errors A → B"], cells, note))
