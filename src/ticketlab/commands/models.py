"""`ticketlab models`: the registered models with their parameter counts, as a table or JSON.

Models are built on the meta device (shapes only), so even VGG-16's 138M parameters cost no memory or time.
"""

import json

from ticketlab.core.counting.render import aligned_table
from ticketlab.core.masks import prunable_names
from ticketlab.models import MODELS, build_model, model_info
from ticketlab.plugins import origin

COLUMNS = ("name", "parameters", "prunable", "input_shape", "num_classes", "source", "description")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("models", help="list the model zoo with parameter counts",
                                   description="List registered models: total parameters, prunable weights "
                                               "(Linear/ConvNd weights), input shape and default classes.")
    parser.add_argument("names", nargs="*", metavar="NAME", help="only these models (default: all)")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    parser.set_defaults(run=run)


def describe(name: str) -> dict:
    """One row: counts for the default number of classes, from a meta-device build."""
    spec = model_info(name)
    model = build_model(name, device="meta")
    params = dict(model.named_parameters())
    return {
        "name": name,
        "parameters": sum(p.numel() for p in params.values()),
        "prunable": sum(params[n].numel() for n in prunable_names(model)),
        "input_shape": list(model.input_shape),
        "num_classes": spec.num_classes,
        "source": origin(spec.factory.__module__),  # built-in, or the plugin module that registered it
        "description": spec.description,
    }


def format_table(rows: list[dict]) -> str:
    """The source column only when a plugin's model is listed: the zoo alone reads as before."""
    plugins = any(r["source"] != "built-in" for r in rows)
    cells = [[
        r["name"], f"{r['parameters']:,}", f"{r['prunable']:,}", "x".join(map(str, r["input_shape"])),
        str(r["num_classes"]), *([r["source"]] if plugins else []), r["description"],
    ] for r in rows]
    header = ["name", "parameters", "prunable", "input", "classes", *(["source"] if plugins else []), "description"]
    return "\n".join(aligned_table(header, cells, right={1, 2, 4}, rule=False))  # numbers align right


def run(args) -> int:
    names = args.names or MODELS.names()
    for name in names:
        MODELS.get(name)  # unknown names fail before any work, with a suggestion
    rows = [describe(name) for name in names]
    print(json.dumps(rows, indent=2) if args.json else format_table(rows))
    return 0
