"""Output shaping: cost per row, and what it does to a probability-based extraction.

Part 1 times each shaping control (and the canonical-input keys) per row, on batches
of 1 and 64 rows of 10 and 1000 classes.

Part 2 attacks the demo ``digits`` model. The held-out digits split is cut in half:
the attacker's half is its "public" data, from which it makes N queries (random
one-pixel shifts, intensity scaling and pixel noise — inputs of the victim's kind but
mostly off its training distribution, as public data is); the other half is benign
traffic and the fidelity test set. The attacker trains a student (multinomial
logistic regression — the victim's own family, so a perfect clone is possible — on
the answers as soft labels, cross-entropy with a small L2 penalty) and we report:

- **clone fidelity**: the student's top-1 agreement with the victim on the benign half;
- **benign top-1 agreement** and **benign mean L1 change** of the answers benign users
  get (a sparse answer is rebuilt as a client would: missing mass spread evenly);
- **query top-1 kept**: how often the attacker's (low-confidence) answers keep the
  victim's label.

Part 3 counts how often each perturbation changes the top-1 of low-confidence
100-class answers, where published reverse sigmoid flips most argmaxes.

Defences: modelshield's keyed noise at 1/2/5 %, reverse sigmoid, misinformation and
the built-in demo plan (read from the demo policy), each next to ART's ``GaussianNoise``
with its scale bisected to the same benign mean L1, and ART's ``ReverseSigmoid`` (same
beta, gamma), applied to the same queries. A labels-only row is the floor: every answer carries the
label, so no output perturbation can push a careful attacker below it.

Usage::

    .venv/bin/python bench/shaping.py [--seeds 3] [--queries 250 1000]

Prints Markdown tables and writes ``bench/results/shaping.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from threadpoolctl import threadpool_limits

from machine import machine_info as common_machine_info
from modelshield.controls.canonical import CanonicalInput
from modelshield.controls.minimization import Minimization
from modelshield.controls.misinformation import Misinformation
from modelshield.controls.noise import CalibratedNoise
from modelshield.controls.reverse_sigmoid import ReverseSigmoid
from modelshield.controls.shaping import ShapingChain
from modelshield.evaluation.attacks.public_data import augment_digits
from modelshield.evaluation.attacks.soft_labels import softmax_regression
from modelshield.evaluation.utility import as_distribution, describe
from modelshield.models.demo import digits_split, train_digits_model
from modelshield.policy.demo import DEMO_POLICY
from modelshield.policy.shaping import ShapingSpec

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_OUTPUT = BENCH_DIR / "results" / "shaping.json"
SECRET = b"bench-shaping-secret-0123456789"
CLASSES = 10
RS_BETA, RS_GAMMA = 1.0, 0.1  # ART's defaults, for both implementations

Answers = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""(victim probabilities, query rows) -> the distributions the caller can rebuild."""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- part 1: cost per row ---------------------------------------------------------------


def per_row_microseconds(call: Callable[[], object], rows: int, budget: float = 0.15) -> float:
    """Median over 5 timed blocks of ``call()``, per row, in µs."""
    call()
    runs = 1
    start = time.perf_counter()
    while time.perf_counter() - start < budget / 5:
        call()
        runs += 1
    samples = []
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(runs):
            call()
        samples.append((time.perf_counter() - t) / runs / rows * 1e6)
    return float(np.median(samples))


def cost_table() -> list[dict[str, Any]]:
    rng = np.random.default_rng(0)
    canonical = CanonicalInput(SECRET, 1.0, context="digits")
    demo = ShapingChain(
        ShapingSpec.model_validate(
            {
                "perturb": [{"kind": "noise", "level": 0.02}],
                "minimize": {"top_k": 3, "decimals": 3},
            }
        )
    )
    results: list[dict[str, Any]] = []
    for classes in (10, 1000):
        for batch in (1, 64):
            rows = rng.integers(0, 17, size=(batch, 64)).astype(np.float64)
            p = rng.dirichlet(np.full(classes, 0.3), size=batch)
            keys = canonical(rows)
            controls: dict[str, Callable[[], object]] = {
                "canonical keys (64 features)": lambda rows=rows: canonical(rows),
                "noise 2%": lambda p=p, keys=keys: CalibratedNoise(0.02)(p, keys),
                "reverse sigmoid": lambda p=p: ReverseSigmoid(RS_BETA, RS_GAMMA)(p),
                "misinformation": lambda p=p, keys=keys: Misinformation(0.5)(p, keys),
                "minimization (top-3, 3 dp)": lambda p=p: Minimization(3, decimals=3)(p),
                "demo plan, keys included": lambda p=p, rows=rows: demo(p, canonical(rows)),
            }
            for name, call in controls.items():
                results.append(
                    {
                        "control": name,
                        "classes": classes,
                        "batch": batch,
                        "us_per_row": round(per_row_microseconds(call, batch), 2),
                    }
                )
    return results


def cost_markdown(results: list[dict[str, Any]]) -> str:
    columns = [(10, 1), (10, 64), (1000, 1), (1000, 64)]
    header = "| control (µs per row) | " + " | ".join(f"{c} classes, batch {b}" for c, b in columns)
    lines = [header + " |", "|---|" + "---:|" * len(columns)]
    for name in dict.fromkeys(r["control"] for r in results):
        cells = []
        for classes, batch in columns:
            found = [
                r
                for r in results
                if r["control"] == name and r["classes"] == classes and r["batch"] == batch
            ]
            cells.append(f"{found[0]['us_per_row']:.1f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --- part 2: extraction -----------------------------------------------------------------


def train_student(rows: np.ndarray, targets: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Softmax regression fitted to soft labels; returns a top-1 predictor."""
    weights = softmax_regression(rows / 16.0, targets, l2=1e-3)

    def predict(test: np.ndarray) -> np.ndarray:
        top: np.ndarray = (np.hstack([test / 16.0, np.ones((len(test), 1))]) @ weights).argmax(1)
        return top

    return predict


def shaped(spec: dict[str, Any]) -> Answers:
    chain = ShapingChain(ShapingSpec.model_validate(spec))
    canonical = CanonicalInput(SECRET, 1.0, context="digits")

    def answers(p: np.ndarray, rows: np.ndarray) -> np.ndarray:
        keys = canonical(rows) if chain.keyed else []
        return as_distribution(chain(p, keys), p.argmax(axis=1), p.shape[1])

    return answers


def labels_only(p: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """What a label-only plan reveals, as a distribution: one-hot on the label."""
    return as_distribution(None, p.argmax(axis=1), p.shape[1])


def art_postprocessors() -> tuple[Any, Any]:
    with warnings.catch_warnings():  # ART warns about every framework it does not find
        warnings.simplefilter("ignore")
        from art.defences.postprocessor import GaussianNoise, ReverseSigmoid

    return GaussianNoise, ReverseSigmoid


def art_noise(scale: float, seed: int = 0) -> Answers:
    gaussian_noise, _ = art_postprocessors()
    post = gaussian_noise(scale=scale)

    def answers(p: np.ndarray, rows: np.ndarray) -> np.ndarray:
        np.random.seed(seed)  # ART draws from NumPy's global generator
        result: np.ndarray = post(p)
        return result

    return answers


def art_reverse_sigmoid(beta: float, gamma: float) -> Answers:
    _, reverse_sigmoid = art_postprocessors()
    post = reverse_sigmoid(beta=beta, gamma=gamma)

    def answers(p: np.ndarray, rows: np.ndarray) -> np.ndarray:
        result: np.ndarray = post(p)
        return result

    return answers


@dataclass
class Setting:
    name: str
    implementation: str
    answers: Answers


@dataclass
class World:
    victim: Any
    pool: np.ndarray
    benign: np.ndarray
    benign_p: np.ndarray


def make_world() -> World:
    victim = train_digits_model()
    _, test_x, _, _ = digits_split()
    order = np.random.default_rng(0).permutation(len(test_x))
    half = len(test_x) // 2
    pool, benign = test_x[order[:half]], test_x[order[half:]]
    return World(victim, pool, benign, victim.predict_proba(benign))


def benign_l1(world: World, answers: Answers) -> float:
    return float(np.abs(answers(world.benign_p, world.benign) - world.benign_p).sum(axis=1).mean())


def matched_art_scale(world: World, target: float) -> float:
    """The ART GaussianNoise scale whose benign mean L1 change equals ``target``."""
    low, high = 1e-6, 1.0
    for _ in range(40):
        mid = (low * high) ** 0.5
        if benign_l1(world, art_noise(mid)) < target:
            low = mid
        else:
            high = mid
    return (low * high) ** 0.5


def evaluate(world: World, setting: Setting, queries: Sequence[int], seeds: int) -> dict[str, Any]:
    truth = world.benign_p.argmax(axis=1)
    benign_answers = setting.answers(world.benign_p, world.benign)
    fidelity: dict[str, float] = {}
    kept: list[float] = []
    for n in queries:
        scores = []
        for seed in range(seeds):
            rows = augment_digits(world.pool, n, np.random.default_rng(1000 + seed))
            p = world.victim.predict_proba(rows)
            answers = setting.answers(p, rows)
            kept.append(float((answers.argmax(axis=1) == p.argmax(axis=1)).mean()))
            scores.append(float((train_student(rows, answers)(world.benign) == truth).mean()))
        fidelity[str(n)] = float(np.mean(scores))
    return {
        "defence": setting.name,
        "implementation": setting.implementation,
        "benign_top1_agreement": float((benign_answers.argmax(axis=1) == truth).mean()),
        "benign_mean_l1": float(np.abs(benign_answers - world.benign_p).sum(axis=1).mean()),
        "query_top1_kept": float(np.mean(kept)),
        "clone_fidelity": fidelity,
    }


def ours_and_matched_art(world: World, name: str, spec: dict[str, Any]) -> list[Setting]:
    """Our shaping ``spec`` and ART's GaussianNoise scaled to the same benign mean L1."""
    ours = shaped(spec)
    scale = matched_art_scale(world, benign_l1(world, ours))
    return [
        Setting(name, "modelshield", ours),
        Setting(f"GaussianNoise scale={scale:.4f} (same L1)", "ART", art_noise(scale)),
    ]


def settings(world: World) -> list[Setting]:
    found: list[Setting] = [Setting("none (noise 0%: raw probabilities)", "-", lambda p, rows: p)]
    for level in (0.01, 0.02, 0.05):
        spec = {"perturb": [{"kind": "noise", "level": level}]}
        found += ours_and_matched_art(world, f"noise {level:.0%}", spec)
    reverse = {"kind": "reverse_sigmoid", "beta": RS_BETA, "gamma": RS_GAMMA}
    found.append(
        Setting(
            f"reverse sigmoid beta={RS_BETA:g} gamma={RS_GAMMA:g}",
            "modelshield",
            shaped({"perturb": [reverse]}),
        )
    )
    found.append(
        Setting(
            f"ReverseSigmoid beta={RS_BETA:g} gamma={RS_GAMMA:g}",
            "ART",
            art_reverse_sigmoid(RS_BETA, RS_GAMMA),
        )
    )
    for threshold in (0.5, 0.7):
        spec = {"perturb": [{"kind": "misinformation", "threshold": threshold}]}
        found += ours_and_matched_art(world, f"misinformation below {threshold:g}", spec)
    # the built-in demo policy's default plan, read from the policy so the row stays true
    demo = DEMO_POLICY["plans"]["free"]["shaping"]
    label = describe(ShapingSpec.model_validate(demo), ["probabilities"])
    found += ours_and_matched_art(world, f"demo plan ({label})", demo)
    found.append(Setting("labels only (the floor)", "modelshield", labels_only))
    return found


def extraction_markdown(rows: list[dict[str, Any]], queries: Sequence[int]) -> str:
    header = (
        "| defence | by | benign top-1 agreement | benign mean L1 | query top-1 kept | "
        + " | ".join(f"clone fidelity, {n} queries" for n in queries)
        + " |"
    )
    lines = [header, "|---|---|---:|---:|---:|" + "---:|" * len(queries)]
    for r in rows:
        fidelity = " | ".join(f"{r['clone_fidelity'][str(n)]:.1%}" for n in queries)
        lines.append(
            f"| {r['defence']} | {r['implementation']} | {r['benign_top1_agreement']:.1%} "
            f"| {r['benign_mean_l1']:.4f} | {r['query_top1_kept']:.1%} | {fidelity} |"
        )
    return "\n".join(lines)


# --- part 3: top-1 flips on low-confidence many-class answers ---------------------------


def flip_table(rows: int = 5000, classes: int = 100) -> list[dict[str, Any]]:
    """How often each defence changes the top-1 of low-confidence 100-class answers."""
    rng = np.random.default_rng(11)
    p = rng.dirichlet(np.full(classes, 5.0), size=rows)  # top-1 around 0.03
    inputs = rng.integers(0, 17, size=(rows, 64)).astype(np.float64)
    ours_noise = shaped({"perturb": [{"kind": "noise", "level": 0.02}]})
    l1 = float(np.abs(ours_noise(p, inputs) - p).sum(axis=1).mean())
    low, high = 1e-7, 1.0
    for _ in range(40):
        mid = (low * high) ** 0.5
        if float(np.abs(art_noise(mid)(p, inputs) - p).sum(axis=1).mean()) < l1:
            low = mid
        else:
            high = mid
    reverse = {"kind": "reverse_sigmoid", "beta": RS_BETA, "gamma": RS_GAMMA}
    cases: list[tuple[str, str, Answers]] = [
        ("noise 2%", "modelshield", ours_noise),
        (f"GaussianNoise scale={low:.5f} (same L1)", "ART", art_noise(low)),
        ("reverse sigmoid", "modelshield", shaped({"perturb": [reverse]})),
        ("ReverseSigmoid", "ART", art_reverse_sigmoid(RS_BETA, RS_GAMMA)),
    ]
    truth = p.argmax(axis=1)
    return [
        {
            "defence": name,
            "implementation": by,
            "classes": classes,
            "rows": rows,
            "top1_changed": float((answers(p, inputs).argmax(axis=1) != truth).mean()),
        }
        for name, by, answers in cases
    ]


def flip_markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| defence | by | top-1 changed |", "|---|---|---:|"]
    for r in rows:
        lines.append(f"| {r['defence']} | {r['implementation']} | {r['top1_changed']:.1%} |")
    return "\n".join(lines)


# --- main -------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    import scipy
    import sklearn

    try:
        from importlib.metadata import version

        art_version: str | None = version("adversarial-robustness-toolbox")
    except Exception:
        art_version = None
    return common_machine_info(
        numpy=np.__version__,
        scipy=scipy.__version__,
        **{"scikit-learn": sklearn.__version__, "adversarial-robustness-toolbox": art_version},
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="attacks per query count")
    parser.add_argument("--queries", type=int, nargs="+", default=[250, 1000])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        art_postprocessors()
    except ImportError:
        log("error: ART is not installed: pip install -e '.[bench]'")
        return 2
    log("timing the controls ...")
    costs = cost_table()
    log("training the victim and running the attacks ...")
    # one BLAS thread: the students are small, and threads only contend on small machines
    with threadpool_limits(limits=1):
        world = make_world()
        extraction = [evaluate(world, s, args.queries, args.seeds) for s in settings(world)]
    log("counting top-1 flips on low-confidence answers ...")
    flips = flip_table()
    costs_md = cost_markdown(costs)
    flips_md = flip_markdown(flips)
    extraction_md = extraction_markdown(extraction, args.queries)
    print("## Shaping cost per row\n")
    print(costs_md)
    print("\n## Probability-based extraction of the demo model\n")
    print(extraction_md)
    print("\n## Top-1 changes on low-confidence 100-class answers (Dirichlet(5) rows)\n")
    print(flips_md)
    document = {
        "benchmark": "shaping",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "parameters": {
            "seeds": args.seeds,
            "queries": args.queries,
            "benign_rows": len(world.benign),
            "attacker_pool_rows": len(world.pool),
            "reverse_sigmoid": {"beta": RS_BETA, "gamma": RS_GAMMA},
        },
        "cost_us_per_row": costs,
        "extraction": extraction,
        "top1_flips": flips,
        "markdown": {"cost": costs_md, "extraction": extraction_md, "flips": flips_md},
        "elapsed_s": round(time.perf_counter() - started, 1),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    option = orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS
    args.output.write_bytes(orjson.dumps(document, option=option) + b"\n")
    log(f"wrote {args.output} in {document['elapsed_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
