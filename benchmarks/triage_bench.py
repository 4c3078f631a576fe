"""Triage: accuracy over split seeds, training time, and the time to triage one text.

    .venv/bin/python benchmarks/triage_bench.py

Prints JSON (recorded by hand in ``docs/benchmarks.md``, section Resident-request triage).
"""

from __future__ import annotations

import json
import os
import time

import pandas as pd

from predict.triage import EVALUATION_SET, evaluate, fit_model

results: dict = {"load_1min": round(os.getloadavg()[0], 2), "seeds": {}}
for seed in range(5):
    ev = evaluate(random_state=seed)
    results["seeds"][seed] = {
        "held_out_matter": {"all": round(ev.held_out.matter_accuracy, 3),
                            **{k: round(v, 3) for k, v in ev.held_out.matter_by_lang.items()}},
        "held_out_department": {
            "all": round(ev.held_out.department_accuracy, 3),
            **{k: round(v, 3) for k, v in ev.held_out.department_by_lang.items()}}}
started = time.perf_counter()
model, rows = fit_model()
results["train_s"] = round(time.perf_counter() - started, 2)
texts = list(pd.read_csv(EVALUATION_SET)["text"])
started = time.perf_counter()
for _ in range(5):
    for text in texts:
        model.classify(text)
results["classify_ms_per_text"] = round(1000 * (time.perf_counter() - started)
                                        / (5 * len(texts)), 2)
print(json.dumps(results, indent=1))
