"""`ticketlab count MODEL`: parameters and per-sample MACs of a registered model, per layer.

Three MAC columns: dense, weight-sparse (only kept weights work), and weight x input-activation sparse (Han et
al.'s product approximation). Masks come from a mask file or a per-layer density table; input densities are
measured on a seeded random-normal batch unless the density table gives them (see docs/counting.md).
"""

from ticketlab.core.counting import (
    count,
    example_input_for,
    load_density_table,
    masks_from_density_table,
)
from ticketlab.core.masks import Masks
from ticketlab.errors import TicketlabError
from ticketlab.models import MODELS, build_model


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "count", help="count parameters and MACs (dense / weight-sparse / weight x activation-sparse)",
        description="Per-layer parameters and MACs per sample of a registered model, optionally pruned by a mask "
                    "file or by a per-layer density table.")
    parser.add_argument("model", metavar="MODEL", help="a registered model (see `ticketlab models`)")
    parser.add_argument("--density-table", metavar="FILE",
                        help="CSV with columns layer, weights_pct and optionally act_pct (output density of the "
                             "layer, Han et al.'s convention) or input_act_pct, in percent; or a built-in table: "
                             "alexnet, vgg16, lenet300, lenet5 (Han et al. 2015)")
    parser.add_argument("--masks", metavar="FILE", help="a ticketlab mask file (safetensors, Masks.save)")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    parser.add_argument("--batch", type=int, default=2, metavar="N",
                        help="examples in the random-normal batch used to measure input densities (default 2)")
    parser.add_argument("--seed", type=int, default=0, metavar="S",
                        help="seed of the model's initialisation and of the example batch (default 0)")
    parser.set_defaults(run=run)


def run(args) -> int:
    MODELS.get(args.model)  # an unknown name fails before any work, with a suggestion
    if args.batch < 1:
        raise TicketlabError(f"--batch must be a positive integer, got {args.batch}")
    if args.masks and args.density_table:
        raise TicketlabError("give either --masks or --density-table, not both")
    model = build_model(args.model, seed=args.seed)
    masks, densities = None, None
    if args.masks:
        masks = Masks.load(args.masks)
        masks.check(model)
    if args.density_table:
        table = load_density_table(args.density_table)
        masks = masks_from_density_table(model, table)
        densities = {layer: d.input_activation for layer, d in table.items() if d.input_activation is not None}
    counts = count(model, masks, example_input_for(model, batch=args.batch, seed=args.seed), densities)
    if any(row.density_source == "measured" for row in counts.layers):
        counts.notes.append(f"'measured' input densities come from a random-normal batch (seed {args.seed}) through "
                            "the untrained model; for real data call ticketlab.core.counting.count(model, masks, "
                            "example_input=batch)")
    print(counts.to_json() if args.json else counts)  # str(counts): the per-layer table
    return 0
