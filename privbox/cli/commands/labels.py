"""``privbox labels``: every label-recovery method side by side on one update (optionally GInfoR).

Example::

    privbox labels --update run/update.safetensors --secret run/secret.safetensors --ginfor
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    """Add the ``labels`` subcommand."""
    parser = subparsers.add_parser(
        "labels",
        help="recover the batch's labels with every method and compare them (accuracies with --secret)",
        description="Run the label-recovery methods (iDLG, Yin, LLG, E2EGI, iLRG) on --update and print a "
        "markdown table. The classifier weights iLRG needs come from the update's θ0. With --secret the table "
        "adds accuracies; --ginfor (needs --secret: it uses the true batch) adds the per-sample gradient "
        "information ratio.",
    )
    parser.add_argument("--update", required=True, metavar="U", help="the client update (.safetensors)")
    parser.add_argument("--secret", metavar="S", help="the ground truth, for accuracies and --ginfor")
    parser.add_argument("--methods", metavar="M1,M2", help="comma-separated methods (default: all)")
    parser.add_argument("--ginfor", action="store_true", help="also print the GInfoR table (needs --secret)")
    parser.add_argument("--out", metavar="JSON", help="write the rows (and GInfoR table) to this JSON file")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Execute ``privbox labels``; returns the exit code."""
    from ...attacks.tuning import build_model_for_update
    from ...labels import LABEL_METHODS, classifier_parameters, compare_label_methods, label_table_to_markdown
    from ...report import write_json_atomic
    from ...core.update import ClientUpdate, Secret
    from ..main import CliError

    if args.ginfor and not args.secret:
        raise CliError("--ginfor needs --secret: GInfoR is computed on the true batch (it is a diagnostic, not an attack)")
    update = ClientUpdate.load(args.update)
    secret = Secret.load(args.secret) if args.secret else None
    # A FedAvg delta is read as the pseudo-gradient -ΔW/(lr·K), the mean over all n local samples.
    count = update.meta.num_samples if update.kind == "weight_delta" else update.batch_size
    if secret is not None and secret.labels.shape[0] != count:
        raise CliError(f"the secret has {secret.labels.shape[0]} samples but the update was computed on {count}; "
                       "pass the secret captured together with this update")
    methods = None
    if args.methods:
        methods = [m.strip() for m in args.methods.split(",") if m.strip()]
        unknown = [m for m in methods if m not in LABEL_METHODS]
        if unknown:
            raise CliError(f"unknown method(s) {unknown}; choose from {sorted(LABEL_METHODS)}")
    fc_weight = fc_bias = None
    model = None
    if update.global_state is not None:
        model = build_model_for_update(update)
        fc_weight, fc_bias = classifier_parameters(model, update.num_classes)
    rows = compare_label_methods(
        update.gradients(), fc_weight, fc_bias, count, update.num_classes,
        true_labels=None if secret is None else secret.labels, methods=methods,
    )
    print(f"label recovery on {args.update} ({'n' if update.kind == 'weight_delta' else 'B'}={count}, C={update.num_classes}"
          + (", scored against the secret)" if secret is not None else ")"))
    print(label_table_to_markdown(rows))
    if secret is not None:
        print(f"true labels: {sorted(int(y) for y in secret.labels)}")
    result = {"update": str(args.update), "rows": rows}
    if args.ginfor:
        from ...analysis.ginfor import gradient_information_ratio
        from ...core.images import normalize

        if model is None:
            raise CliError("--ginfor needs the update's θ0 (global_state) to rebuild the model")
        if update.kind == "weight_delta":
            print("note: GInfoR is computed for one gradient of the whole local dataset at θ0")
        model.train() if update.meta.bn_mode == "train" else model.eval()
        inputs = normalize(secret.images, update.meta.mean, update.meta.std)
        table = gradient_information_ratio(model, inputs, secret.labels)
        print("\nGInfoR (per-sample share of the batch gradient, %):")
        print(table.to_markdown())
        result["ginfor"] = list(table)
    if args.out:
        write_json_atomic(Path(args.out), result)
        print(f"rows written to {args.out}")
    return 0
