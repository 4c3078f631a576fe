"""Triage of free-text resident requests into big, small or private matters.

Character n-grams (TF-IDF) and a linear model: they need no word segmentation, so English and
Chinese descriptions go through the same pipeline. Trained on the labelled examples in
``sample_data/requests/labelled.csv`` plus every classification staff made in the service
(``geo.requests.staff_labels``); evaluated on whole held-out groups (a base sentence and its
variants stay on one side of the split).

Run ``python -m predict.triage`` for the held-out accuracy and confusion matrix.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, confusion_matrix
from sklearn.model_selection import GroupShuffleSplit
from sklearn.pipeline import Pipeline

LABELLED = Path(__file__).resolve().parents[1] / "sample_data" / "requests" / "labelled.csv"
MATTERS = ("big", "small", "private")


def load_examples(path: Path = LABELLED) -> pd.DataFrame:
    """Labelled examples: ``text, lang, service_code, matter, group``."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    unknown = set(frame["matter"]) - set(MATTERS)
    if unknown:
        raise ValueError(f"{path}: unknown matters {sorted(unknown)}")
    return frame


class MatterClassifier:
    """TF-IDF over character 1-4-grams and a logistic regression.

    Parameters
    ----------
    C : float
        Inverse regularisation strength of the logistic regression.
    random_state : int
        Seed of the solver.
    """

    def __init__(self, C: float = 10.0, random_state: int = 0) -> None:
        self.C = C
        self.random_state = random_state

    def fit(self, texts, matters) -> MatterClassifier:
        """Learn from texts and their matters; returns self."""
        self.pipeline_ = Pipeline([
            ("tfidf", TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 4), lowercase=True,
                                      sublinear_tf=True, min_df=1)),
            ("model", LogisticRegression(C=self.C, max_iter=2000,
                                         random_state=self.random_state)),
        ]).fit(list(texts), list(matters))
        self.classes_ = self.pipeline_.classes_
        return self

    def _check(self) -> None:
        if not hasattr(self, "pipeline_"):
            raise RuntimeError("MatterClassifier is not fitted; call fit() first.")

    def predict(self, texts) -> np.ndarray:
        """The most likely matter of each text."""
        self._check()
        return self.pipeline_.predict(list(texts))

    def predict_proba(self, texts) -> np.ndarray:
        """Probabilities of each matter (columns in ``classes_`` order)."""
        self._check()
        return self.pipeline_.predict_proba(list(texts))

    def classify(self, text: str) -> tuple[str, float]:
        """One text's matter and the model's probability for it."""
        proba = self.predict_proba([text])[0]
        best = int(np.argmax(proba))
        return str(self.classes_[best]), float(proba[best])


@dataclass
class Evaluation:
    """Held-out figures of the classifier."""

    rows_train: int
    rows_test: int
    accuracy: float
    accuracy_by_lang: dict[str, float]
    labels: tuple[str, ...]
    confusion: list[list[int]]  # rows: true matter, columns: predicted, in ``labels`` order

    def as_markdown(self) -> str:
        """The figures as a Markdown table."""
        head = "| true \\ predicted | " + " | ".join(self.labels) + " |"
        lines = [head, "|---" * (len(self.labels) + 1) + "|"]
        for label, row in zip(self.labels, self.confusion, strict=True):
            lines.append(f"| {label} | " + " | ".join(str(v) for v in row) + " |")
        by_lang = ", ".join(f"{k} {v:.3f}" for k, v in sorted(self.accuracy_by_lang.items()))
        return (f"Held-out accuracy: **{self.accuracy:.3f}** ({self.rows_test} examples; "
                f"trained on {self.rows_train}); by language: {by_lang}\n\n" + "\n".join(lines))


def evaluate(examples: pd.DataFrame | None = None, *, test_size: float = 0.25,
             random_state: int = 0) -> Evaluation:
    """Hold out whole groups of examples, train on the rest, and score the held-out part."""
    examples = load_examples() if examples is None else examples
    split = GroupShuffleSplit(n_splits=1, test_size=test_size, random_state=random_state)
    train_idx, test_idx = next(split.split(examples, groups=examples["group"]))
    train, test = examples.iloc[train_idx], examples.iloc[test_idx]
    model = MatterClassifier(random_state=random_state).fit(train["text"], train["matter"])
    predicted = model.predict(test["text"])
    by_lang = {lang: float(accuracy_score(part["matter"], predicted[test["lang"].eq(lang)]))
               for lang, part in test.groupby("lang")}
    return Evaluation(
        rows_train=len(train), rows_test=len(test),
        accuracy=float(accuracy_score(test["matter"], predicted)),
        accuracy_by_lang=by_lang, labels=MATTERS,
        confusion=confusion_matrix(test["matter"], predicted, labels=list(MATTERS)).tolist(),
    )


_lock = threading.Lock()
_current: MatterClassifier | None = None


def train(extra: list[tuple[str, str]] | None = None) -> MatterClassifier:
    """Train on the labelled examples plus ``extra`` (text, matter) pairs, and use it."""
    global _current
    examples = load_examples()
    texts, matters = list(examples["text"]), list(examples["matter"])
    for text, matter in extra or ():
        texts.append(text)
        matters.append(matter)
    model = MatterClassifier().fit(texts, matters)
    with _lock:
        _current = model
    return model


def current() -> MatterClassifier:
    """The classifier in use (trained on first use)."""
    with _lock:
        model = _current
    return model if model is not None else train()


if __name__ == "__main__":
    print(evaluate().as_markdown())
