"""Model accuracy under a defense row, from the same client spec as the attacked cells.

The victim architecture of the attack entry (model, kwargs, image size, classes) is trained for a
few epochs on the embedded-photograph proxy task (:func:`privbox.defenses.utility.sample_task`)
by :func:`privbox.defenses.utility.measure_utility`, once with no defense and once per defense
row, with the same initialisation, batches and learning rate (a matched comparison). The task is a
proxy that ranks defenses by how much they slow learning; it is not a benchmark accuracy.
"""

from __future__ import annotations

from typing import Any

from .spec import AttackEntry, DefenseEntry, UtilitySpec

__all__ = ["utility_key", "measure_row_utility"]


def utility_key(attack: AttackEntry, defense: DefenseEntry) -> str:
    """Cells that share the victim architecture and the defense share one accuracy measurement."""
    client = attack.client
    kwargs = ",".join(f"{k}={v}" for k, v in sorted(dict(client.get("model_kwargs", {})).items()))
    return f"{client.get('model', 'dlg_lenet')}({kwargs})_{client.get('image_size', 32)}px__{defense.name}"


def _defense_object(spec, utility: UtilitySpec):
    """The one defense object (or scheme) the row trains with; None for an undefended row."""
    from ..defenses import build_defense

    if spec.scheme:
        from ..defenses.schemes.registry import get_scheme

        return get_scheme(spec.scheme)
    if len(spec.defenses) > 1:
        return NotImplemented
    if not spec.defenses:
        return None
    d = spec.defenses[0]
    return build_defense(d.name, d.params, seed=spec.seed)


def measure_row_utility(attack: AttackEntry, defense: DefenseEntry, utility: UtilitySpec, seed: int = 0) -> dict[str, Any]:
    """Test accuracy (and ε where the defense has an accountant) of the victim trained under ``defense``.

    Returns ``{"accuracy", "epsilon", "delta", "steps", "seconds", "note"}``; ``accuracy`` is None
    when the row combines several defenses (not measured) or the training refused the pair.
    """
    from ..core.errors import PrivboxError
    from ..defenses.utility import measure_utility, sample_task
    from ..nn.models import build_model
    from .cell import client_spec

    spec = client_spec(attack, defense, seed)
    obj = _defense_object(spec, utility)
    if obj is NotImplemented:
        return {"accuracy": None, "epsilon": None, "note": "several defenses in one row: accuracy not measured"}
    kwargs = dict(spec.model_kwargs)
    if spec.model == "dlg_lenet":
        kwargs.setdefault("image_size", spec.image_size)
    train, test = sample_task(num_classes=spec.num_classes, train_per_image=utility.train_per_image,
                              test_per_image=utility.test_per_image, size=spec.image_size, channels=spec.channels,
                              seed=seed)

    def model_fn(classes: int):
        return build_model(spec.model, num_classes=classes, **kwargs)

    try:
        result = measure_utility(obj, dataset=train, test_dataset=test, epochs=utility.epochs, lr=utility.lr,
                                 batch_size=utility.batch_size, seed=seed, model_fn=model_fn,
                                 num_classes=spec.num_classes, mean=spec.mean, std=spec.std, delta=utility.delta)
    except (PrivboxError, ValueError) as exc:
        return {"accuracy": None, "epsilon": None, "note": f"training refused: {exc}"}
    return {
        "accuracy": float(result["test_accuracy"]),
        "epsilon": None if result.get("epsilon") is None else float(result["epsilon"]),
        "delta": result.get("delta"),
        "steps": result.get("steps"),
        "seconds": result.get("seconds"),
        "diverged": bool(result.get("diverged", False)),
        "note": str(result.get("defense", "")),
    }

