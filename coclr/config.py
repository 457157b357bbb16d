"""The pipeline's configuration: validation, preset resolution, stage settings.

``config.yaml`` is checked against ``workflow/schemas/config.schema.yaml`` when
the workflow starts (and when an entry point is run by hand). Errors name the
offending key and say how to fix it; then every key left out takes the schema's
default, the one place a setting is defined (docs/settings.md is rendered from it).
The training stages see one *resolved* dict: the chosen preset with the dataset's
``overrides`` merged over it, every key present.
"""

import copy
import difflib
import functools
import json
import os
from pathlib import Path

import jsonschema
import yaml

from coclr.errors import CoclrError

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
DEFAULT_CONFIG = REPO / "config.yaml"
SETTINGS_DOC = REPO / "docs" / "settings.md"
SECTIONS = ("ingest", "frames", "flow", "resources")  # top-level settings, the same for every preset


class ConfigError(CoclrError, ValueError):
    """A configuration problem, with the key at fault and the fix in its message."""


def _key(path) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def _describe(error, prefix=()) -> str:
    path = [*prefix, *error.absolute_path]
    key = _key(path)
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        unexpected = sorted(set(error.instance) - set(allowed))
        lines = []
        for name in unexpected:
            hint = difflib.get_close_matches(name, allowed, n=1)
            suggestion = f" (did you mean `{hint[0]}`?)" if hint else ""
            lines.append(f"unknown key `{_key([*path, name])}`{suggestion}; "
                         f"allowed here: {', '.join(allowed)}")
        return "; ".join(lines)
    if error.validator == "required":
        missing = error.message.split("'")[1]
        return f"key `{_key([*path, missing])}` is missing: add it (docs/settings.md)"
    if error.validator == "oneOf":
        return f"key `{key}`: {error.instance!r} is neither a number nor a list of numbers"
    return f"key `{key}`: {error.message}"


SINGLE_SPLIT = ("synthetic", "k400")  # formats with one official train/test split


def _split_problems(config: dict) -> list:
    """The old ``split`` key and split numbers a dataset does not have."""
    problems = []
    datasets = config.get("datasets") if isinstance(config.get("datasets"), dict) else {}
    for name, entry in datasets.items():
        if not isinstance(entry, dict):
            continue
        if "split" in entry:
            problems.append(f"key `datasets.{name}.split` was replaced by `splits`, a list of official splits: "
                            f"write `splits: [{entry['split']}]` (each split is evaluated, and their mean reported)")
        if entry.get("format") in SINGLE_SPLIT and entry.get("splits") not in (None, [1]):
            problems.append(f"key `datasets.{name}.splits`: {entry['format']} has one official split; set `splits: [1]`")
    return problems


@functools.lru_cache(maxsize=None)
def schema() -> dict:
    """The parsed schema, read once per process."""
    return yaml.safe_load(SCHEMA.read_text())


def _fills_defaults(validator_class):
    """``validator_class`` that also writes each missing property's schema ``default`` into the instance."""
    check_properties = validator_class.VALIDATORS["properties"]

    def properties(validator, spec, instance, subschema):
        if validator.is_type(instance, "object"):
            for key, value in spec.items():
                if "default" in value and key not in instance:
                    instance[key] = copy.deepcopy(value["default"])
        yield from check_properties(validator, spec, instance, subschema)

    return jsonschema.validators.extend(validator_class, {"properties": properties})


FillingValidator = _fills_defaults(jsonschema.Draft202012Validator)


def _problems(instance, subschema, prefix=()) -> list:
    """Every violation of ``subschema`` by ``instance``, each named by its key under ``prefix``."""
    errors = jsonschema.Draft202012Validator(subschema).iter_errors(instance)
    return [_describe(e, prefix) for e in sorted(errors, key=lambda e: list(e.absolute_path))]


def fill_defaults(config: dict) -> None:
    """Write every key the schema gives a default into a valid ``config``. A dataset's ``overrides``
    stay as written: they are partial by design and only what they name replaces the preset's."""
    overrides = {name: entry.pop("overrides") for name, entry in config["datasets"].items() if "overrides" in entry}
    try:
        FillingValidator(schema()).validate(config)
    finally:
        for name, value in overrides.items():
            config["datasets"][name]["overrides"] = value


def validate(config: dict, source="config.yaml") -> None:
    """Raise :class:`ConfigError` listing every schema violation and unknown name; then fill in every
    default of the schema, so code indexes settings directly."""
    # `--config seeds=[0,1,2]` arrives as ['0', '1', '2'] (Snakemake reads a list's items as strings).
    if isinstance(config.get("seeds"), list):
        config["seeds"] = [int(s) if isinstance(s, str) and s.isdigit() else s for s in config["seeds"]]
    problems = _problems(config, schema())
    for key, table in (("dataset", "datasets"), ("preset", "presets")):
        name = config.get(key)
        if isinstance(name, str) and isinstance(config.get(table), dict) and name not in config[table]:
            problems.append(f"key `{key}`: {name!r} is not one of the configured {table} "
                            f"({', '.join(config[table])}); add it under `{table}` or pick one of them")
    problems += _split_problems(config)
    if problems:
        raise ConfigError(f"invalid configuration ({source}):\n  - " + "\n  - ".join(problems)
                          + "\nFix these keys in config.yaml, your --configfile, or the --config override.")
    fill_defaults(config)


def check_dataset_paths(config: dict, dataset: str) -> None:
    """A real dataset must exist on disk before any job is planned for it."""
    if dataset not in config["datasets"]:
        raise ConfigError(f"dataset {dataset!r} is not configured: add `datasets.{dataset}` to config.yaml "
                          f"(configured: {', '.join(config['datasets'])})")
    entry = config["datasets"][dataset]
    if entry["format"] == "synthetic":
        return  # generated by the pipeline itself
    if entry["format"] == "folder":
        root = Path(entry.get("root", ""))
        if not (root.is_dir() or (root.is_file() and root.suffix.lower() == ".csv")):
            raise ConfigError(f"key `datasets.{dataset}.root`: {entry.get('root')} is neither a folder nor a .csv file; "
                              "point it at your class folders or your CSV list")
        if "classes" in entry and not Path(entry["classes"]).is_file():
            raise ConfigError(f"key `datasets.{dataset}.classes`: file {entry['classes']} does not exist")
        return
    keys = ["root"] + (["splits_dir"] if entry["format"] in ("ucf101", "hmdb51") else [])
    for key in keys:
        if key not in entry:
            raise ConfigError(f"key `datasets.{dataset}.{key}` is missing: set it to the dataset's folder")
        if not Path(entry[key]).is_dir():
            raise ConfigError(f"key `datasets.{dataset}.{key}`: folder {entry[key]} does not exist; point it at "
                              f"your copy of {dataset} in config.yaml or a --configfile")
    for path in entry.get("annotations", []):
        if not Path(path).is_file():
            raise ConfigError(f"key `datasets.{dataset}.annotations`: file {path} does not exist")


def deep_merge(base: dict, override: dict) -> dict:
    """``override`` merged into a copy of ``base``, recursively for nested dicts."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def resolve(config: dict, dataset=None) -> dict:
    """Hyper-parameters for one dataset of a validated config: the preset, then the dataset's
    overrides. Every key of a preset is present (:func:`validate` filled the preset's defaults), and
    the merge is valid: the overrides were checked against the preset schema, whose every rule is
    about one key."""
    dataset = dataset or config["dataset"]
    return deep_merge(config["presets"][config["preset"]], config["datasets"][dataset].get("overrides", {}))


def complete_settings(partial: dict) -> dict:
    """``partial`` settings (preset keys and the sections ``resources``, ``frames``, ...) over the
    schema's defaults (the paper's recipe), validated: the settings of code that builds them itself
    (tests, benchmarks) rather than from config.yaml; every key is present, as from :func:`resolve`."""
    root = schema()
    settings_schema = {"$defs": root["$defs"], "type": "object", "additionalProperties": False,
                       "properties": {**root["$defs"]["preset"]["properties"],
                                      **{key: root["properties"][key] for key in SECTIONS}}}
    settings = copy.deepcopy(partial)
    problems = _problems(settings, settings_schema)
    if problems:
        raise ConfigError("invalid settings:\n  - " + "\n  - ".join(problems))
    FillingValidator(settings_schema).validate(settings)
    return settings


def generator_defaults() -> dict:
    """The synthetic generator's parameters at their schema defaults (``datasets.<d>.generate``)."""
    return {key: spec["default"] for key, spec in schema()["$defs"]["generate"]["properties"].items()}


def load(path=None, overrides=None) -> dict:
    """Read, merge and validate a config file (what the entry points use when run by hand)."""
    path = Path(path or DEFAULT_CONFIG)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found: pass --config PATH")
    config = deep_merge(yaml.safe_load(path.read_text()), overrides or {})
    validate(config, source=str(path))
    return config


def spec_of(spec: dict) -> dict:
    """A schema node with its ``$ref`` (into ``$defs``) merged in; the node's own keys win."""
    if "$ref" not in spec:
        return spec
    target = schema()["$defs"][spec["$ref"].rsplit("/", 1)[1]]
    return {**spec_of(target), **{k: v for k, v in spec.items() if k != "$ref"}}


def _yaml(value) -> str:
    """A default as config.yaml writes it."""
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    if isinstance(value, list):
        return "[" + ", ".join(_yaml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_yaml(v)}" for k, v in value.items()) + "}"
    return str(value)


def _allowed(spec: dict) -> str:
    """The values a key takes, in words."""
    spec = spec_of(spec)
    if "enum" in spec:
        return ", ".join(_yaml(v) for v in spec["enum"])
    if "const" in spec:
        return _yaml(spec["const"])
    if "oneOf" in spec:
        return "; or ".join(_allowed(s) for s in spec["oneOf"])
    kinds = spec.get("type", "any")
    text = " or ".join(kinds) if isinstance(kinds, list) else kinds
    if text == "array":
        text = f"list of {_allowed(spec['items'])}" if "items" in spec else "list"
        if spec.get("minItems") == spec.get("maxItems") and "minItems" in spec:
            text += f" ({spec['minItems']} items)"
    bounds = [("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<")]
    return " ".join([text, *(f"{sign} {spec[name]}" for name, sign in bounds if name in spec)])


def _rows(spec: dict, prefix: str) -> list:
    """Table rows of every key under ``spec``; a nested section gets a row per key."""
    rows = []
    for key, child in spec_of(spec).get("properties", {}).items():
        child = spec_of(child)
        name = f"{prefix}{key}"
        if "properties" in child and key != "overrides":
            rows += _rows(child, f"{name}.")
            continue
        default = f"`{_yaml(child['default'])}`" if "default" in child else ""
        rows.append(f"| `{name}` | {_allowed(child).replace('|', '/')} | {default} | {child.get('description', '')} |")
    return rows


def settings_markdown() -> str:
    """docs/settings.md: every key of the schema with the values it takes, its default and meaning."""
    root, defs = schema(), schema()["$defs"]
    header = "| key | values | default | meaning |\n|---|---|---|---|"

    def section(title, text, rows):
        return [f"## {title}", "", text, "", header, *rows, ""]

    lines = ["# Settings", "",
             "Every key of `config.yaml`, rendered from `workflow/schemas/config.schema.yaml` (the one place a "
             "setting is defined) by `coclr.config.settings_markdown()`; a test fails when this file is out of "
             "date. After editing the schema, regenerate it with",
             "", "```",
             "python -c 'from coclr import config; config.SETTINGS_DOC.write_text(config.settings_markdown())'",
             "```", "",
             "A key left out of `config.yaml` (and of your `--configfile` / `--config`) takes its default here. "
             "The defaults of the preset keys are the paper's recipe (UCF101 schedule), so the `paper` preset "
             "lists nothing and the `cpu` preset lists only its departures, each with its reason.", ""]
    top = [f"| `{key}` | {_allowed(root['properties'][key])} | (required) | {root['properties'][key]['description']} |"
           for key in root["required"]]
    top += [row for key, spec in root["properties"].items() if key not in (*root["required"], *SECTIONS)
            for row in _rows({"properties": {key: spec}}, "")]
    lines += section("The configuration", "The configuration's own content (required), and the seeds.", top)
    for key in SECTIONS:
        text = spec_of(root["properties"][key])["description"]
        lines += section(f"`{key}`", text[0].upper() + text[1:] + ".",
                         _rows(root["properties"][key], f"{key}."))
    lines += section("Presets (`presets.<name>`)",
                     "The hyper-parameters of training and evaluation. A dataset's `overrides` take the same keys "
                     "and are merged over the chosen preset (both are validated).",
                     _rows(defs["preset"], ""))
    lines += section("Datasets (`datasets.<name>`)",
                     "Where a dataset's videos are; only `splits` and the synthetic generator's `generate` keys have "
                     "defaults (the other keys depend on `format`).",
                     _rows(defs["dataset"], ""))
    return "\n".join(lines)


def add_settings_arguments(parser) -> None:
    """``--settings JSON`` (what Snakemake passes) or ``--config FILE`` (by hand)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--settings", help="resolved settings as JSON (passed by the Snakemake rules)")
    group.add_argument("--config", help="config.yaml to resolve the settings from (default: the repo's)")
    parser.add_argument("--dataset", help="dataset whose overrides apply with --config (default: config's `dataset`)")


def settings_from_args(args, sections=()) -> dict:
    """The resolved settings; by hand (``--config``) also the top-level ``sections`` (e.g. frames, flow)."""
    if args.settings:
        return json.loads(args.settings)
    config = load(args.config)
    return {**resolve(config, args.dataset), "resources": config["resources"],  # as the rules' settings_json
            **{key: config[key] for key in sections}}


def put_on_pythonpath(folder) -> None:
    """Put ``folder`` first on PYTHONPATH, which the jobs of a workflow inherit (also through sbatch):
    with ``--sdm conda`` the environment holds the dependencies and the jobs run the workflow's code."""
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")]))
