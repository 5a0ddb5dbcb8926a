"""``raml show KEY [--json]``: one run (light: no torch)."""

from __future__ import annotations

import json

from backend.commands.common import add_key_argument, store
from backend.io.terminal import printable


def register(subparsers) -> None:
    p = subparsers.add_parser("show", help="print a run")
    add_key_argument(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_show)


def show_payload(run) -> dict:
    """The JSON object printed by ``show --json`` (fields fixed by issue #3)."""
    summary = run.summary
    payload = {
        "key": run.key,
        "model": run.model_name,
        "question": run.question,
        "answer": run.answer,
        "answer_source": run.answer_source,
        "correct": run.correct,
        "predicted_answer": run.predicted_answer,
        "n_tokens": summary.n_tokens,
        "n_steps": summary.n_steps,
        "timings": run.timings,
        "cuts": run.cuts,
        "cut_policy": run.cut_policy or None,  # how the cuts were chosen (backend.pipeline.cut_policy)
        "tokens": [{"cut": int(c), "loss": float(v)} for c, v in zip(run.tokens["cut"], run.tokens["loss"])],
        "steps": [
            {
                "step": int(r["index"]) + 1,  # the step number every panel, the URL and `branch --step` use
                "index": int(r["index"]),  # its row in steps.parquet (step - 1)
                "text": r["text"],
                "start": int(r["start"]),
                "end": int(r["end"]),
                "loss": float(r["loss"]),
                "p_answer": float(r["p_answer"]),
                "entropy": float(r["entropy"]),
                "reflection": bool(r["reflection"]),
            }
            for r in run.steps.to_dict("records")
        ],
    }
    _add_exact_fields(run, payload)
    return payload


def _add_exact_fields(run, payload: dict) -> None:
    """Steps gain exact_update_loss/norm and the payload a fidelity block once ``exact KEY`` ran."""
    from backend.analysis.exact.data import show_fields

    per_cut, fidelity = show_fields(run)
    for step in payload["steps"]:
        step.update(per_cut.get(step["end"], {"exact_update_loss": None, "exact_update_norm": None}))
    payload["fidelity"] = fidelity


def cmd_show(args) -> int:
    st = store(args)
    run = st.open(st.resolve(args.key))
    payload = show_payload(run)
    if args.json:
        from backend.analysis.lens.grid import show_fields as lens_fields
        from backend.pipeline.lineage import show_fields

        payload |= show_fields(st, run)
        payload |= lens_fields(run, st)
        print(json.dumps(payload, ensure_ascii=False))
        return 0
    s = run.summary
    p = {k: printable(v) for k, v in payload.items() if k in ("model", "question", "answer", "answer_source")}
    print(f"run      {run.key}\nmodel    {p['model']}\nquestion {p['question']}")
    print(
        f"answer   {p['answer']} ({p['answer_source']}), predicted {payload['predicted_answer']!r}, "
        f"correct={payload['correct']}"
    )
    print(f"tokens   {s.n_tokens}, steps {s.n_steps}, loss {s.initial_loss:.3f} -> {s.final_loss:.3f} nats")
    for st_ in payload["steps"]:
        flag = " [reflection]" if st_["reflection"] else ""
        print(f"  {st_['step']:3d}  L={st_['loss']:.3f}  {printable(st_['text'].strip()[:70])}{flag}")
    return 0
