"""Triage of free-text resident requests: the matter (big, small, private) and the department.

Character n-grams (TF-IDF) and a linear model per question: they need no word segmentation, so
English and Chinese descriptions go through the same pipeline. Trained on the labelled examples
in ``sample_data/requests/labelled.csv`` plus every classification staff made in the service
(``geo.requests.staff_labels``). Two evaluations, reported by ``twin requests evaluate``:

- *held out*: whole groups of the labelled examples (a base sentence and its variants stay on
  one side of the split);
- *bilingual set*: ``sample_data/requests/evaluation.csv``, short phrasings as residents type
  them ("streetlight broken" / "路灯坏了"), English and Chinese in pairs, never trained on.

The model in use lives in the model registry (``predict.registry``, target
:data:`REGISTRY_TARGET`): :class:`TriageModels` loads the newest one once per version and
trains and stores one when there is none.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, confusion_matrix
from sklearn.model_selection import GroupShuffleSplit
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted
from sqlalchemy.engine import Connection, Engine

from geo import predictions as model_sql

REQUESTS_DIR = Path(__file__).resolve().parents[1] / "sample_data" / "requests"
LABELLED = REQUESTS_DIR / "labelled.csv"
EVALUATION_SET = REQUESTS_DIR / "evaluation.csv"
MATTERS = ("big", "small", "private")
# Who acts on a matter: a trade of the county (big matters) or of the compound (small ones);
# "resident" for private matters. The catalogue (civic/catalogue.py) names each one's party.
DEPARTMENTS = ("lighting", "roads", "drainage", "sanitation", "greening",
               "property_management", "utilities", "resident")
REGISTRY_TARGET = "request_triage"
# Words that place a problem inside a resident's own home: a private matter, whatever the trade.
PRIVATE_KEYWORDS = ("my flat", "my home", "my house", "my apartment", "my kitchen",
                    "my bathroom", "my bedroom", "my living room", "我家", "家里", "卧室", "客厅",
                    "我卧室")
# Big matters are the county departments' trades (road structure, lighting, drainage, pipes);
# small ones are solved in the community (spoil and rubbish, green space, the compound's own
# order). So once a text is known not to be private, its trade decides big or small.
DEPARTMENT_MATTER = {"lighting": "big", "roads": "big", "drainage": "big", "utilities": "big",
                     "sanitation": "small", "greening": "small", "property_management": "small",
                     "resident": "private"}
# Words that name a trade outright, in both languages: a text that names one trade more often
# than any other is routed to it; otherwise (no word, or a tie) the classifier decides. English
# words match at the start of a word ("tree" is not in "street"); Chinese ones anywhere.
DEPARTMENT_KEYWORDS: dict[str, tuple[str, ...]] = {
    "lighting": ("streetlight", "street light", "street lamp", "lamp post", "light pole",
                 "路灯", "灯杆"),
    "roads": ("pothole", "road surface", "asphalt", "pavement", "sidewalk", "crack", "collapse",
              "sunk", "sinking", "landslide", "bridge", "railing", "guardrail", "桥", "栏杆",
              "护栏", "坑", "路面", "沥青", "人行道", "裂", "塌", "下沉",
              "滑坡"),
    "drainage": ("drain", "gully", "flood", "sewage", "standing water", "下水道", "雨水",
                 "积水", "污水", "淹", "排水"),
    "utilities": ("manhole", "gas", "water main", "water pipe", "power cable", "井盖", "井口",
                  "煤气", "燃气", "水管", "电线", "自来水"),
    "sanitation": ("rubbish", "garbage", "trash", "dumped", "dumping", "rubble", "debris",
                   "spoil", "bins", "waste", "垃圾", "渣土", "乱倒", "杂物堆"),
    "greening": ("green space", "green belt", "lawn", "grass", "tree", "绿地", "草坪", "绿化",
                 "树"),
    "property_management": ("ground lock", "stairwell", "corridor", "lift", "elevator",
                            "entrance door", "parking space", "advert", "poster", "flyer",
                            "地锁", "广告", "楼道", "电梯", "单元门",
                            "车位"),
}


def load_examples(path: Path = LABELLED) -> pd.DataFrame:
    """Labelled examples: ``text, lang, service_code, matter, department, group``."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    unknown = (set(frame["matter"]) - set(MATTERS)) | (set(frame["department"])
                                                       - set(DEPARTMENTS))
    if unknown:
        raise ValueError(f"{path}: unknown labels {sorted(unknown)}")
    return frame


def _pipeline(C: float, random_state: int) -> Pipeline:
    return Pipeline([
        ("tfidf", TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 4), lowercase=True,
                                  sublinear_tf=True, min_df=1)),
        ("model", LogisticRegression(C=C, max_iter=2000, random_state=random_state,
                                     class_weight="balanced")),
    ])


class TriageModel(BaseEstimator):
    """Two text classifiers over character 1-4-grams: the matter and the department.

    A scikit-learn estimator: ``__init__`` stores the parameters, ``fit`` learns the two
    pipelines (``matter_``, ``department_``) and returns the model, ``predict`` refuses an
    unfitted model; stored in the model registry (:func:`train_and_store`).

    Parameters
    ----------
    C : float
        Inverse regularisation strength of the logistic regressions.
    random_state : int
        Seed of the solvers.
    keywords : dict or None
        Words that name a trade outright (:data:`DEPARTMENT_KEYWORDS`); None: the classifier
        alone decides.

    Examples
    --------
    >>> model = TriageModel().fit(["hole in the road", "路灯坏了", "my tap drips"],
    ...                           [["big", "roads"], ["big", "lighting"],
    ...                            ["private", "resident"]])
    >>> model.classes_[0].tolist()
    ['big', 'private']
    """

    def __init__(self, C: float = 10.0, random_state: int = 0,
                 keywords: dict[str, tuple[str, ...]] | None = None) -> None:
        self.C = C
        self.random_state = random_state
        self.keywords = keywords

    def _keyword_department(self, text: str) -> str | None:
        """The one trade the text names most often, or None (no trade word, or a tie)."""
        hits = {}
        lowered = text.lower()
        for department, words in (self.keywords or {}).items():
            count = sum(len(re.findall((r"\b" if w.isascii() else "") + re.escape(w), lowered))
                        for w in words)
            if count:
                hits[department] = count
        if not hits:
            return None
        best = max(hits.values())
        winners = [d for d, c in hits.items() if c == best]
        return winners[0] if len(winners) == 1 else None

    def fit(self, texts, labels) -> TriageModel:
        """Learn from texts and their ``[matter, department]`` pairs; returns self."""
        texts = list(texts)
        labels = np.asarray(labels, dtype=object).reshape(len(texts), 2)
        self.matter_ = _pipeline(self.C, self.random_state).fit(texts, list(labels[:, 0]))
        self.department_ = _pipeline(self.C, self.random_state).fit(texts, list(labels[:, 1]))
        self.classes_ = [self.matter_.classes_, self.department_.classes_]
        return self

    def predict(self, texts) -> np.ndarray:
        """``[matter, department]`` of each text.

        Private or not comes from the matter classifier; for the rest the trade (named by a
        keyword, else the department classifier's best) decides big or small.
        """
        check_is_fitted(self, ("matter_", "department_"))
        texts = list(texts)
        matters = self.matter_.predict(texts)
        proba = self.department_.predict_proba(texts)
        classes = self.department_.classes_
        out = np.empty((len(texts), 2), dtype=object)
        for i, matter in enumerate(matters):
            order = np.argsort(-proba[i])
            named = self._keyword_department(texts[i])
            lowered = texts[i].lower()
            if self.keywords and any(w in lowered for w in PRIVATE_KEYWORDS):
                matter = "private"  # in the resident's own home
            elif named is not None:
                matter = "public"  # it names a public trade: never the resident's own matter
            if matter == "private":
                department = "resident"
            elif named is not None:
                department = named
            else:  # the most likely trade that is not the resident
                department = next((classes[j] for j in order if classes[j] != "resident"),
                                  classes[order[0]])
            out[i] = (DEPARTMENT_MATTER[department], department)
        return out

    def classify(self, text: str) -> tuple[str, str, float]:
        """One text's matter, department and the model's probability for the matter."""
        check_is_fitted(self, ("matter_", "department_"))
        matter, department = self.predict([text])[0]
        proba = self.matter_.predict_proba([text])[0]
        return str(matter), str(department), float(proba.max())


@dataclass
class Scores:
    """How well the model did on one set of examples."""

    rows: int
    matter_accuracy: float
    matter_by_lang: dict[str, float]
    matter_recall: dict[str, float]  # per true matter
    department_accuracy: float  # over big and small matters (private ones have no trade)
    department_by_lang: dict[str, float]
    department_by_matter: dict[str, float]
    confusion: list[list[int]]  # matters: rows true, columns predicted, in MATTERS order
    misses: list[str] = field(default_factory=list)  # a few misrouted texts, to read

    def as_markdown(self, title: str) -> str:
        """The figures as Markdown."""
        def fmt(d: dict[str, float]) -> str:
            return ", ".join(f"{k} {v:.3f}" for k, v in sorted(d.items()))
        head = "| true \\ predicted | " + " | ".join(MATTERS) + " |"
        lines = [head, "|---" * (len(MATTERS) + 1) + "|"]
        for label, row in zip(MATTERS, self.confusion, strict=True):
            lines.append(f"| {label} | " + " | ".join(str(v) for v in row) + " |")
        misses = "".join(f"\n- misrouted: {m}" for m in self.misses)
        return (f"### {title} ({self.rows} examples)\n\n"
                f"- matter accuracy **{self.matter_accuracy:.3f}**; by language: "
                f"{fmt(self.matter_by_lang)}; recall by matter: {fmt(self.matter_recall)}\n"
                f"- department accuracy **{self.department_accuracy:.3f}**; by language: "
                f"{fmt(self.department_by_lang)}; by matter: {fmt(self.department_by_matter)}"
                f"{misses}\n\n" + "\n".join(lines))


@dataclass
class Evaluation:
    """Held-out and bilingual-set figures of the triage model."""

    rows_train: int
    held_out: Scores
    bilingual: Scores

    def as_markdown(self) -> str:
        """Both sets' figures."""
        return (f"Triage trained on {self.rows_train} labelled examples.\n\n"
                + self.held_out.as_markdown("Held-out groups of the labelled examples")
                + "\n\n" + self.bilingual.as_markdown(
                    "Bilingual evaluation set (sample_data/requests/evaluation.csv)"))


def score(model: TriageModel, test: pd.DataFrame) -> Scores:
    """Score a fitted model on examples with ``text, lang, matter, department``."""
    predicted = model.predict(test["text"])
    matter_hat, dept_hat = predicted[:, 0], predicted[:, 1]
    matter_ok = test["matter"].to_numpy() == matter_hat
    routed = test["matter"].to_numpy() != "private"
    dept_ok = test["department"].to_numpy() == dept_hat
    lang = test["lang"].to_numpy()
    matter_true = test["matter"].to_numpy()

    def mean(mask) -> float:
        return float(np.mean(mask)) if np.size(mask) else float("nan")
    return Scores(
        rows=len(test),
        matter_accuracy=float(accuracy_score(test["matter"], matter_hat)),
        matter_by_lang={k: mean(matter_ok[lang == k]) for k in sorted(set(lang))},
        matter_recall={m: mean(matter_ok[matter_true == m]) for m in MATTERS
                       if (matter_true == m).any()},
        department_accuracy=mean(dept_ok[routed]),
        department_by_lang={k: mean(dept_ok[routed & (lang == k)]) for k in sorted(set(lang))},
        department_by_matter={m: mean(dept_ok[matter_true == m]) for m in ("big", "small")
                              if (matter_true == m).any()},
        confusion=confusion_matrix(test["matter"], matter_hat, labels=list(MATTERS)).tolist(),
        misses=[f"{t} -> {d} (is {true})" for t, d, true, ok, r in zip(
            test["text"], dept_hat, test["department"], dept_ok, routed, strict=True)
            if r and not ok][:6],
    )


def _labels(frame: pd.DataFrame) -> np.ndarray:
    return frame[["matter", "department"]].to_numpy(dtype=object)


def evaluate(examples: pd.DataFrame | None = None, *, test_size: float = 0.25,
             random_state: int = 0) -> Evaluation:
    """Score held-out groups of the labelled examples, and the bilingual evaluation set."""
    examples = load_examples() if examples is None else examples
    split = GroupShuffleSplit(n_splits=1, test_size=test_size, random_state=random_state)
    train_idx, test_idx = next(split.split(examples, groups=examples["group"]))
    train, test = examples.iloc[train_idx], examples.iloc[test_idx]
    held = TriageModel(random_state=random_state, keywords=DEPARTMENT_KEYWORDS).fit(
        train["text"], _labels(train))
    whole = TriageModel(random_state=random_state, keywords=DEPARTMENT_KEYWORDS).fit(
        examples["text"], _labels(examples))
    bilingual = pd.read_csv(EVALUATION_SET, dtype=str, keep_default_na=False)
    return Evaluation(rows_train=len(examples), held_out=score(held, test),
                      bilingual=score(whole, bilingual))


def fit_model(extra: list[tuple[str, str, str]] | None = None) -> tuple[TriageModel, int]:
    """A model trained on the labelled examples plus ``extra`` (text, matter, department)."""
    examples = load_examples()
    texts, labels = list(examples["text"]), [list(x) for x in _labels(examples)]
    for text, matter, department in extra or ():
        texts.append(text)
        labels.append([matter, department])
    return TriageModel(keywords=DEPARTMENT_KEYWORDS).fit(texts, labels), len(texts)


def train_and_store(conn: Connection, extra: list[tuple[str, str, str]] | None = None) -> str:
    """Train on the labelled examples plus staff labels, keep it in the registry; its version."""
    from predict import registry

    model, rows = fit_model(extra)
    now = datetime.now(UTC)
    return registry.save(conn, target=REGISTRY_TARGET, metric=None, estimator=model,
                         train_from=None, train_to=now, rows=rows,
                         metrics={"staff_examples": len(extra or ())},
                         features=["text"], params={"C": model.C})


class TriageModels:
    """The triage model in use: the registry's newest, loaded once per version.

    Built once per process by whoever needs it (the service's lifespan, a CLI command);
    the lock keeps concurrent requests from loading or training the same model twice.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        self._loaded: tuple[str, TriageModel] | None = None

    def current(self) -> tuple[TriageModel, str]:
        """The newest model and its version (trained and stored first if there is none)."""
        from predict import registry

        with self._lock:
            with self.engine.connect() as conn:
                version = model_sql.latest_version(conn, REGISTRY_TARGET)
            if version is None:
                with self.engine.begin() as conn:
                    version = train_and_store(conn)
            if self._loaded is None or self._loaded[0] != version:
                with self.engine.connect() as conn:
                    model, _ = registry.load(conn, target=REGISTRY_TARGET, version=version)
                self._loaded = (version, model)
            return self._loaded[1], self._loaded[0]


if __name__ == "__main__":
    print(evaluate().as_markdown())
