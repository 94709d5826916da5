"""One cell of the matrix: one attack against one defended client, for one seed.

The client is :class:`privbox.fl.client.Client` built from the attack's victim spec plus the
defense row; the attack is :func:`privbox.attacks.build_attack` of the attack entry. Whether a
pair can run at all is read from the registries: a defense whose ``requires`` the victim does not
meet makes the client refuse (the refusal is the skip reason), and an attack whose required
capabilities (its engine's entry in ``ENGINES`` plus what the configured objective, label
strategy and regularizers declare, :meth:`privbox.attacks.build.Attack.required_capabilities`) are missing from the defended update is skipped with the
missing capability names. Nothing here dispatches on an attack's or defense's name.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import paddle

from .spec import AttackEntry, DefenseEntry, merge_client

__all__ = ["CellResult", "client_spec", "run_cell", "random_start_pixels", "population_prior"]


@dataclass
class CellResult:
    """The outcome of one cell: ``row`` (JSON-ready metrics) and, when it ran, the pixels."""

    row: dict[str, Any]
    originals: Optional[np.ndarray] = None
    reconstruction: Optional[np.ndarray] = None


def client_spec(attack: AttackEntry, defense: DefenseEntry, seed: int, extra_defenses: Optional[list] = None):
    """The :class:`~privbox.fl.spec.ClientSpec` of a cell: the attack's victim, the defense row's
    overrides and defenses (appended after the victim's own), and ``seed``."""
    from ..fl.spec import ClientSpec

    values = merge_client(attack.client, defense.client_overrides())
    values["defenses"] = list(values.get("defenses", [])) + list(defense.defenses) + list(extra_defenses or [])
    values["seed"] = int(seed)
    return ClientSpec.from_dict(values)


def random_start_pixels(shape: tuple, mean, std, seed: int) -> np.ndarray:
    """What an attack starting from N(0, I) in model space shows before any step, in pixels."""
    from ..core.images import denormalize

    x = np.random.default_rng([int(seed), 7]).standard_normal(shape).astype(np.float32)
    return denormalize(x, mean, std)


def population_prior(size: int, channels: int) -> np.ndarray:
    """The RDLV prior: the mean of all embedded photographs (a public population average, as
    NVIDIA's prior is a population-average image), ``[C, H, W]`` in [0, 1]."""
    from ..data import load_samples

    return load_samples(size=size, channels=channels).mean(axis=0)


def _skip(base: dict, reason: str) -> CellResult:
    row = dict(base, status="skipped", reason=reason)
    return CellResult(row)


def _requirement_text(entries: list, registry) -> str:
    parts = [f"{name} requires {sorted(registry.entry(name).requires)}" for name in entries if registry.entry(name).requires]
    return "; ".join(parts)


def _attack_model(update):
    """The attacker's copy of the architecture, rebuilt from what the update records."""
    from ..nn.models import build_model

    meta = update.meta
    paddle.seed(0)
    return build_model(meta.model_id, num_classes=meta.num_classes, **dict(meta.model_kwargs))


def run_cell(attack: AttackEntry, defense: DefenseEntry, seed: int, extra_defenses: Optional[list] = None,
             progress: bool = False) -> CellResult:
    """Run one cell and score it (see the module docstring).

    Returns a :class:`CellResult` whose ``row`` holds ``status`` (``"ok"`` or ``"skipped"`` with
    ``reason``), PSNR/SSIM (mean and standard deviation over the batch, with the matching named),
    the random-start PSNR under the same matching, label accuracy (multiset), RDLV (SSIM, against
    the population-average prior), the client's defense descriptions and wall times.
    """
    from ..attacks import build_attack
    from ..attacks.registries import ENGINES
    from ..defenses import DEFENSES
    from ..defenses.registry import unsupported_reason
    from ..fl.client import Client
    from ..metrics import evaluate
    from ..metrics.matching import score_images
    from ..metrics.rdlv import relative_data_leakage

    base = {"attack": attack.name, "defense": defense.name, "seed": int(seed)}
    start = time.perf_counter()
    spec = client_spec(attack, defense, seed, extra_defenses)
    names = [d.name for d in spec.defenses]
    try:
        client = Client(spec)
        refused = [(n, unsupported_reason(n, client.model, client.plan.bn_mode)) for n in names]
        refused = [f"{why} (the defense requires {sorted(DEFENSES.entry(n).requires)})" for n, why in refused if why]
        if refused:
            return _skip(base, "; ".join(refused))
        update, secret = None, None
        for round_index in range(defense.rounds):
            update, secret = client.run_round(round_index=round_index)
    except ValueError as exc:  # PrivboxError kinds and the defenses' own refusals
        declared = _requirement_text(names, DEFENSES)
        if not declared and not spec.scheme:
            raise
        return _skip(base, f"{declared or 'scheme ' + str(spec.scheme)}: {exc}")
    capture_s = time.perf_counter() - start
    runner = build_attack(dict(attack.attack, progress=progress, seed=int(seed)))
    engine = runner.engine_name(update)
    needed = sorted(set(runner.required_capabilities(update)) | set(ENGINES.entry(engine).requires))
    missing = update.threat_model().missing(needed)
    if missing:
        return _skip(base, f"attack {attack.name} ({engine} engine and its regularizers) needs {missing}, which the "
                           f"update under {defense.name!r} does not carry")
    recon = runner.run(_attack_model(update), update)
    scores = evaluate(recon, secret)
    meta = update.meta
    baseline = score_images(secret.images, random_start_pixels(secret.images.shape, meta.mean, meta.std, seed),
                            matching=scores["matching"])
    prior = population_prior(secret.images.shape[-1], secret.images.shape[1])
    rdlv = relative_data_leakage(secret.images, recon.pixels, prior=prior, metrics=("ssim",))
    assignment = scores["assignment"] or list(range(len(secret.images)))
    row = dict(
        base,
        status="ok",
        batch_size=int(secret.images.shape[0]),
        image_size=int(secret.images.shape[-1]),
        model=meta.model_id,
        matching=scores["matching"],
        psnr=float(scores["psnr"]),
        psnr_std=float(scores["psnr_std"]),
        ssim=float(scores["ssim"]),
        ssim_std=float(np.std(scores["per_image"]["ssim"])),
        per_image_psnr=[float(v) for v in scores["per_image"]["psnr"]],
        psnr_random=float(baseline.summary["psnr_mean"]),
        label_accuracy=float(scores["label_accuracy"]),
        label_accuracy_kind=scores["label_accuracy_kind"],
        rdlv=float(rdlv.value),
        iterations=int(recon.iterations),
        defenses_applied=list(meta.defenses),
        capture_s=capture_s,
        attack_s=float(recon.wall_time),
        wall_s=time.perf_counter() - start,
    )
    return CellResult(row, secret.images, recon.pixels[np.asarray(assignment)])
