"""``privbox rank``: the RA-i rank-analysis index of a paddle.vision model.

Example::

    privbox rank --model resnet18 --input-shape 3,224,224 --batch-size 8 --maxpool-kernel 19
"""

from __future__ import annotations

import argparse
import json

MODELS = ("resnet18", "resnet34", "resnet50", "vgg11", "lenet")


def _build(name: str, num_classes: int):
    import paddle.vision.models as models

    if name == "lenet":
        return models.LeNet(num_classes=num_classes)
    return getattr(models, name)(pretrained=False, num_classes=num_classes)


def _parse_shape(text: str):
    parts = [p for p in text.replace("x", ",").split(",") if p.strip()]
    try:
        shape = [int(p) for p in parts]
    except ValueError:
        raise ValueError(f"--input-shape must be integers like 3,224,224, got {text!r}") from None
    if len(shape) != 3 or any(s <= 0 for s in shape):
        raise ValueError(f"--input-shape must be three positive sizes C,H,W like 3,224,224, got {text!r}")
    return shape


def register(subparsers) -> None:
    """Add the ``rank`` subcommand."""
    p = subparsers.add_parser(
        "rank",
        help="rank-analysis index (RA-i) of a model: > 0 means layer-wise closed-form recovery is impossible",
        description=(
            "Compute RA-i (Label-based-Defense / E2EGI, after R-GAP) for a paddle.vision model by tracing "
            "layer sizes on a dummy input. --maxpool-kernel replaces the kernel of the first max-pool "
            "(the ResNet stem; 19 is the RA defense scheme)."
        ),
    )
    p.add_argument("--model", required=True, choices=MODELS, help="paddle.vision.models architecture (random weights)")
    p.add_argument("--input-shape", required=True, help="per-sample input shape C,H,W, e.g. 3,224,224")
    p.add_argument("--batch-size", type=int, default=1, help="batch size B (default 1)")
    p.add_argument("--maxpool-kernel", type=int, default=None, help="new kernel of the first MaxPool2D (stride/padding kept)")
    p.add_argument("--num-classes", type=int, default=None, help="classifier outputs (default 1000, lenet 10)")
    p.add_argument("--per-layer", action="store_true", help="also print the per-layer table")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Execute ``privbox rank``; returns the exit code."""
    from privbox.analysis.rank import rank_analysis, set_maxpool_kernel

    shape = _parse_shape(args.input_shape)
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.maxpool_kernel is not None and args.maxpool_kernel < 1:
        raise ValueError(f"--maxpool-kernel must be >= 1, got {args.maxpool_kernel}")
    num_classes = args.num_classes if args.num_classes is not None else (10 if args.model == "lenet" else 1000)
    if num_classes < 1:
        raise ValueError(f"--num-classes must be >= 1, got {num_classes}")
    model = _build(args.model, num_classes)
    if args.maxpool_kernel is not None:
        set_maxpool_kernel(model, args.maxpool_kernel)
    try:
        result = rank_analysis(model, shape, batch_size=args.batch_size)
    except (RuntimeError, ValueError) as exc:  # e.g. a kernel larger than the feature map
        raise ValueError(f"the forward pass failed for input shape {shape}: {str(exc).splitlines()[0]}") from None
    verdict = "under-determined (R-GAP-style recovery impossible)" if result.ra_i > 0 else "not under-determined"
    if args.json:
        print(
            json.dumps(
                {
                    "model": args.model,
                    "input_shape": shape,
                    "batch_size": args.batch_size,
                    "maxpool_kernel": args.maxpool_kernel,
                    "ra_i": result.ra_i,
                    "argmax_layer": result.argmax_layer,
                    "layers": [vars(l) for l in result.layers],
                }
            )
        )
        return 0
    print(f"RA-i: {result.ra_i}  ({verdict}; maximum at layer '{result.argmax_layer}')")
    print(f"model: {args.model}  input: {'x'.join(map(str, shape))}  batch size: {args.batch_size}"
          + (f"  max-pool kernel: {args.maxpool_kernel}" if args.maxpool_kernel is not None else ""))
    if args.per_layer:
        print(result.table())
    return 0
