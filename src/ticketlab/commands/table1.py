"""`ticketlab table1`: Table 1 of the source talk (parameter and MAC reductions by pruning), recomputed.

Han et al.'s per-layer densities on AlexNet, VGG-16 and the LeNets; quoted figures beside global magnitude
pruning for GoogLeNet, ResNet-50 and SqueezeNet; weight counts of the lottery-ticket networks.
"""

import json

from ticketlab.paper.table1 import format_table1, table1


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "table1", help="reproduce Table 1 of the source talk (params and MACs before/after pruning)",
        description="Recompute the talk's Table 1 from Han et al. 2015's per-layer densities (arXiv 1506.02626) "
                    "with ticketlab's counting, beside the quoted figures.")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    parser.add_argument("--seed", type=int, default=0, metavar="S",
                        help="seed of the random init used for the global-magnitude rows (default 0)")
    parser.set_defaults(run=run)


def run(args) -> int:
    result = table1(seed=args.seed)
    print(json.dumps(result, indent=2) if args.json else format_table1(result))
    return 0
