"""`argomlops evaluate`: what the judge measures of a finished run's generated images.

    argomlops evaluate --run runs/2026-11-27_09h01m09s [--count 64] [--seed 0] [--temperature T] [--tags a b]

1. The judge (`judge.py`): a small classifier trained on the run's training images and tags (or the
   one cached under `<run>/evaluation/`); its accuracy on the validation split is the ceiling. The
   prior is loaded before, so that a tag it does not know is bad input before anything slow happens.
2. `count` images are drawn from the run's prior (`Sampler`, as `generate` draws them) and decoded by
   its VQ-VAE: `count` per tag for a conditional prior, each conditioned on its tag; `count` in all
   for an unconditional one. Batch c of `GENERATE_BATCH` images uses the seed itself for c = 0 and a
   hash of (seed, c) after, so a seed gives the same images however the run is evaluated.
3. Measured in the judge's feature space (`judge_metrics.py`): per-tag conditional accuracy (the share
   of images conditioned on t that the judge classifies as t; for an unconditional prior, the share of
   generated and of real images given each tag instead), the Fréchet distance to the validation images
   beside the real-vs-real floor, and k-NN precision and recall. The real reference is the validation
   split; for a conditional prior only its images that carry one of the generated tags.
4. Read from the run: the VQ-VAE's validation PSNR and the prior's bits per code (the last line of
   `<stage>/metrics.jsonl`, else the final checkpoint's state; the parent run's for a run without its own).

Writes `<run>/evaluation.json`, merges `summary(...)` into provenance.json under "evaluation", and
prints one plain-text table (`evaluation_table.py`). A metric that cannot be measured (no tags, too
few validation images) is None, with the reason under "unavailable".
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from argomlops.config import RunConfig
from argomlops.errors import InputError
from argomlops.trainer.logs import log, quiet_tensorflow
from argomlops.trainer.run import stored_config, utc_now
from argomlops.trainer.storage import ArtifactStore, open_store

if TYPE_CHECKING:
    from argomlops.trainer.judge import Judge
    from argomlops.trainer.sampler import Sampler

PRIOR_MODEL = "pixelcnn/model.keras"
EVALUATION = "evaluation.json"
MAX_COUNT = 4096
GENERATE_BATCH = 256
DECODE_BATCH = 32

quiet_tensorflow()


def _wanted_tags(store: ArtifactStore, config: RunConfig, condition_size: int, tags: list[str] | None) -> list[str]:
    """The tags to generate: `tags` (checked against the prior's) or all of a conditional prior's."""
    names = list(config.models.pixelcnn.condition_on_tags)
    if condition_size == 0:
        if tags:
            raise InputError(f"--tags: the prior of {store.uri} is unconditional (no conditionOnTags)")
        return []
    if len(names) != condition_size:
        raise InputError(
            f"{store.uri}/run.yaml: conditionOnTags does not match the prior's {condition_size} tag inputs"
        )
    unknown = sorted(set(tags or []) - set(names))
    if unknown:
        raise InputError(f"--tags: {unknown} not among the tags this prior knows: {names}")
    return [name for name in names if not tags or name in tags]


def _batch_seed(seed: int, batch: int) -> int:
    return seed if batch == 0 else int(np.random.SeedSequence([seed, batch]).generate_state(1)[0])


def generate_images(
    sampler: Sampler,
    vqvae: Any,
    conditions: np.ndarray | None,
    count: int,
    seed: int,
    temperature: float,
    transform: Callable[[np.ndarray], np.ndarray] = lambda images: images,
) -> np.ndarray:
    """`count` images (`transform`ed, e.g. downscaled for the judge) drawn from the prior and decoded.

    Args:
        conditions: (count, T) tag vectors of a conditional prior, None for an unconditional one.
    """
    from argomlops.trainer.vqvae import decode_indices

    images = []
    for batch, start in enumerate(range(0, count, GENERATE_BATCH)):
        size = min(GENERATE_BATCH, count - start)
        condition = None if conditions is None else conditions[start : start + size]
        codes = sampler.sample(size, seed=_batch_seed(seed, batch), temperature=temperature, condition=condition)
        for part in range(0, size, DECODE_BATCH):
            images.append(transform(decode_indices(vqvae, codes[part : part + DECODE_BATCH])))
    return np.concatenate(images)


def one_hot_rows(names: list[str], wanted: list[str], count: int) -> np.ndarray:
    """(count * len(wanted), len(names)): `count` one-hot rows of each wanted tag in turn (none: `count` zero rows)."""
    rows = np.zeros((count * max(1, len(wanted)), len(names)), np.float32)
    for i, tag in enumerate(wanted):
        rows[i * count : (i + 1) * count, names.index(tag)] = 1.0
    return rows


def last_metric(store: ArtifactStore, stage: str, keys: tuple[str, ...]) -> float | None:
    """The first of `keys` in the stage's last metrics.jsonl line, else in its final checkpoint's state."""
    records: list[dict[str, Any]] = []
    if store.exists(f"{stage}/metrics.jsonl"):
        records = [json.loads(line) for line in store.read_text(f"{stage}/metrics.jsonl").splitlines() if line.strip()]
    if not records and store.exists("latest.json"):
        checkpoint = store.read_json("latest.json").get("stages", {}).get(stage, {}).get("checkpoint")
        if checkpoint and store.exists(f"{checkpoint}/state.json"):
            records = [store.read_json(f"{checkpoint}/state.json").get("last") or {}]
    for key in keys:
        if records and isinstance(records[-1].get(key), int | float):
            return float(records[-1][key])
    return None


def _run_figures(store: ArtifactStore, config: RunConfig) -> dict[str, float | None]:
    parent = open_store(config.resume_from) if config.resume_from else None
    figures: dict[str, float | None] = {}
    for name, stage, keys in (
        ("reconstruction_psnr", "vqvae", ("val_psnr",)),
        ("bits_per_code", "pixelcnn", ("val_bits_per_code", "train_bits_per_code")),
    ):
        value = last_metric(store, stage, keys)
        if value is None and parent is not None:
            value = last_metric(parent, stage, keys)
        figures[name] = value
    return figures


def measure(judge: Judge, generated: np.ndarray, targets: np.ndarray, real: np.ndarray, seed: int) -> dict[str, Any]:
    """Accuracy (or tag shares), FD beside its floor and precision / recall of scored image sets.

    Args:
        generated: (N, s, s, 3) images at the judge's side (`judge.downscale_images`), scored as generated.
        targets: (N, T) multi-hot of the judged tags each generated image was meant to show (all zero for
            an unconditional prior).
        real: (M, s, s, 3) real reference images, already downscaled (`judge.load_small`).
        seed: of the subsets the FD and precision / recall draw.
    """
    from argomlops.trainer.judge import classified_as, tag_accuracy
    from argomlops.trainer.judge_metrics import fd_with_floor, precision_recall

    probabilities, features = judge.score(generated, downscaled=True)
    real_probabilities, real_features = judge.score(real, downscaled=True)
    out: dict[str, Any] = {"accuracy": None, "tag_shares": None}
    if judge.tags and targets.any():
        # Only the tags some image was meant to show: the others were not generated.
        out["accuracy"] = tag_accuracy(probabilities, targets, judge.tags, judge.exclusive, keep_absent=False)
    elif judge.tags:
        shares = {
            "generated": classified_as(probabilities, judge.exclusive).mean(axis=0),
            "real": classified_as(real_probabilities, judge.exclusive).mean(axis=0) if len(real) else None,
        }
        out["tag_shares"] = {
            side: None if values is None else dict(zip(judge.tags, map(float, values), strict=True))
            for side, values in shares.items()
        }
    out["frechet"] = fd_with_floor(real_features, features, seed=seed)
    out["precision_recall"] = precision_recall(real_features, features, seed=seed)
    return out


def _reasons(result: dict[str, Any]) -> dict[str, str]:
    reasons = {}
    if not result["judge"]["tags"]:
        reasons["accuracy"] = "no judged tags: the run's images carry no useful tags"
    elif result["judge"]["held_out_accuracy"] is None:
        reasons["ceiling"] = "no validation images"
    if result["frechet"] is None:
        reasons["frechet"] = f"{result['reference_images']} real reference images: need at least 4 (2 per half)"
    if result["precision_recall"] is None:
        reasons["precision_recall"] = "need more images than k in both sets"
    return reasons


def _ceiling(held_out: dict[str, Any] | None, wanted: list[str]) -> dict[str, Any] | None:
    """The judge's held-out accuracy on the generated tags (all of it for an unconditional prior)."""
    if held_out is None or not wanted:
        return held_out
    per_tag = {t: held_out["per_tag"].get(t) for t in wanted}
    known = [v for v in per_tag.values() if v is not None]
    return {"per_tag": per_tag, "mean": float(np.mean(known)) if known else None}


def _check(store: ArtifactStore, count: int, temperature: float | None) -> RunConfig:
    if not 1 <= count <= MAX_COUNT:
        raise InputError(f"--count: must be 1..{MAX_COUNT}, got {count}")
    if temperature is not None and not temperature > 0:
        raise InputError(f"--temperature: must be > 0, got {temperature}")
    if not store.exists(PRIOR_MODEL):
        raise InputError(f"--run: {store.uri}/{PRIOR_MODEL} not found: the run has no trained PixelCNN prior")
    if not store.exists("run.yaml"):
        raise InputError(f"--run: {store.uri} is not a run folder (it has no run.yaml)")
    return stored_config(store)


def evaluate_run(
    store: ArtifactStore, count: int, seed: int = 0, temperature: float | None = None, tags: list[str] | None = None
) -> dict[str, Any]:
    """Judge the run in `store` (see the module docstring); writes evaluation.json and provenance.json.

    Args:
        count: images per tag (conditional prior) or in all (unconditional), 1..MAX_COUNT.
        temperature: of sampling (default: the run's training.pixelcnn.temperature).
        tags: the conditional prior's tags to generate (default: all of them).
    """
    import argomlops.trainer.pixelcnn  # noqa: F401  (registers the prior's layers for loading)
    from argomlops.trainer.checkpoint import load_keras
    from argomlops.trainer.codes import load_vqvae
    from argomlops.trainer.data import select_images
    from argomlops.trainer.judge import downscale_images, load_or_train_judge, load_small
    from argomlops.trainer.sampler import Sampler

    config = _check(store, count, temperature)
    temperature = config.training.pixelcnn.temperature if temperature is None else temperature
    started = time.monotonic()
    # 1. The prior first: a tag it does not know fails before anything slow happens.
    sampler = Sampler(load_keras(store, PRIOR_MODEL))
    wanted = _wanted_tags(store, config, sampler.core.condition_size, tags)
    names = list(config.models.pixelcnn.condition_on_tags)
    vqvae = load_vqvae(store)
    selection = select_images(config.data, log=log)
    clock = {"load": time.monotonic() - started}
    # 2. The judge, trained or cached.
    judge = load_or_train_judge(config, store, selection)
    clock["judge"] = time.monotonic() - started - clock["load"]
    # 3. Generated images, downscaled as the judge sees them, and the real reference beside them.
    size = config.data.image_size
    conditions = one_hot_rows(names, wanted, count) if wanted else None
    generated = generate_images(
        sampler, vqvae, conditions, count * max(1, len(wanted)), seed, temperature, lambda x: downscale_images(x, size)
    )
    clock["generate"] = time.monotonic() - started - sum(clock.values())
    reference = [p for p in selection.validation if not wanted or set(selection.tags.get(p, [])) & set(wanted)]
    measured = measure(judge, generated, one_hot_rows(judge.tags, wanted, count), load_small(reference, size), seed)
    clock["measure"] = time.monotonic() - started - sum(clock.values())
    result: dict[str, Any] = {
        "run": store.uri,
        "evaluated": utc_now(),
        "settings": {"count": count, "per_tag": bool(wanted), "seed": seed, "temperature": temperature, "tags": wanted},
        "judge": {**{k: v for k, v in judge.meta.items() if k != "train_seconds"}, "reused": judge.reused},
        "generated_images": len(generated),
        "reference_images": len(reference),
        "accuracy": measured["accuracy"],
        "ceiling": _ceiling(judge.meta.get("held_out_accuracy"), wanted),
        "tag_shares": measured["tag_shares"],
        "frechet": measured["frechet"],
        "precision_recall": measured["precision_recall"],
        **_run_figures(store, config),
    }
    result["unavailable"] = _reasons(result)
    result["seconds"] = {**{k: round(v, 2) for k, v in clock.items()}, "total": round(time.monotonic() - started, 2)}
    store.write_json(EVALUATION, result)
    write_summary(store, summary(result))
    log(f"evaluate: {len(generated)} images judged in {result['seconds']['total']} s; wrote {store.uri}/{EVALUATION}")
    return result


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """What provenance.json keeps of an evaluation: the headline figures and where the rest is."""
    frechet, pr = result.get("frechet") or {}, result.get("precision_recall") or {}
    accuracy, ceiling = result.get("accuracy") or {}, result.get("ceiling") or {}
    return {
        "file": EVALUATION,
        "evaluated": result["evaluated"],
        "generated_images": result["generated_images"],
        "accuracy": accuracy.get("mean"),
        "ceiling": ceiling.get("mean"),
        "frechet_distance": frechet.get("generated"),
        "frechet_floor": frechet.get("floor"),
        "frechet_ratio": frechet.get("ratio"),
        "precision": pr.get("precision"),
        "recall": pr.get("recall"),
        "reconstruction_psnr": result.get("reconstruction_psnr"),
        "bits_per_code": result.get("bits_per_code"),
    }


def write_summary(store: ArtifactStore, values: dict[str, Any]) -> None:
    """Merge `values` into provenance.json under "evaluation" (read, update, written atomically)."""
    provenance = store.read_json("provenance.json") if store.exists("provenance.json") else {}
    provenance["evaluation"] = values
    store.write_json("provenance.json", provenance)


def evaluate_command(args: argparse.Namespace) -> int:
    """Evaluate `args.run` and print the table; returns 0 (InputError: exit 2)."""
    from argomlops.trainer.evaluation_table import format_table

    store = open_store(args.run)
    result = evaluate_run(store, args.count, seed=args.seed, temperature=args.temperature, tags=list(args.tags or []))
    print(format_table(result), flush=True)
    return 0
