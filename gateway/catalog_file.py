"""The versioned catalog file (gateway/catalog.yaml): read, checked, and applied to the database.

One file describes every provider, model and alias rule. Applied for production, each provider gets its real
base URL and the key from its ``api_key_env`` variable (a provider with no key is loaded disabled, so its models
are not served); applied onto the simulator (``simulator_url``), each provider becomes ``simulator-<name>`` at
the simulator's path for it, and the file's ``demo`` entries (fallback demos) are loaded too.

Applying is idempotent and a three-way merge: every object remembers what the file last set
(``catalog_state``), so a field that differs from it was edited in admin and is kept (and reported) unless
``force``; anything else takes the file's value. Every difference is reported as a ``Change``. Objects the file
once loaded but no longer lists are disabled, never deleted (logs and jobs name them).
"""

import os
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

import yaml
from django.db import transaction

from billing.money import credits_to_micro, micro_to_credits
from gateway.models import AliasRule, CatalogModel, FallbackTarget, ModelAlias, Provider

CATALOG_PATH = Path(__file__).resolve().parent / "catalog.yaml"
SIMULATOR_KEY = "sim-local-key"
TOKEN_PRICES = ("input", "cached_input", "cache_write", "output")
UNITS = {unit.value for unit in CatalogModel.PriceUnit} - {CatalogModel.PriceUnit.TOKEN}
PROVIDER_KEYS = {"kind", "base_url", "api_key_env", "supports_responses", "region", "simulator", "demo",
                 "connect_timeout", "read_timeout", "description"}
MODEL_KEYS = {"capability", "description", "intents", "prices", "unit", "price", "max_units", "parameters",
              "context_window", "max_output_tokens", "aliases", "targets", "demo", "enabled"}
RULE_KINDS = tuple(kind.value for kind in AliasRule.Kind)


class CatalogFileError(ValueError):
    """The file does not follow the schema; the message names the place (``models.gpt-5.5.prices``)."""


@dataclass(frozen=True)
class ProviderSpec:
    name: str
    kind: str
    base_url: str  # empty for demo providers, which exist only on the simulator
    simulator: str  # the path on the simulator that stands in for base_url
    api_key_env: str = ""
    supports_responses: bool = False
    region: str = ""
    connect_timeout: float | None = None
    read_timeout: float | None = None
    demo: bool = False


@dataclass(frozen=True)
class ModelSpec:
    public_id: str
    capability: str
    targets: tuple[tuple[str, str], ...]  # (provider name, upstream model), the first tried first
    price_unit: str = CatalogModel.PriceUnit.TOKEN
    prices: dict[str, int] = field(default_factory=dict)  # micro-credits per million tokens
    unit_price: int = 0  # micro-credits per unit
    max_units: int | None = None
    parameters: dict = field(default_factory=dict)
    context_window: int | None = None
    max_output_tokens: int | None = None
    aliases: tuple[str, ...] = ()
    intents: tuple[str, ...] = ()
    description: str = ""
    enabled: bool = True
    demo: bool = False


@dataclass(frozen=True)
class RuleSpec:
    kind: str
    pattern: str
    target: str
    description: str = ""


@dataclass(frozen=True)
class CatalogFile:
    version: str
    providers: dict[str, ProviderSpec]
    models: dict[str, ModelSpec]
    rules: tuple[RuleSpec, ...]


@dataclass(frozen=True)
class Change:
    action: str  # added, updated, kept (an admin edit the file disagrees with), disabled
    subject: str  # "model gpt-5.5", "provider openai", "rule regex …"
    detail: str = ""

    SIGNS = {"added": "+", "updated": "~", "kept": "!", "disabled": "-"}

    def __str__(self) -> str:
        return f"{self.SIGNS[self.action]} {self.subject}" + (f": {self.detail}" if self.detail else "")


# --- reading ---------------------------------------------------------------------------------------------------

class _Loader(yaml.SafeLoader):
    """YAML with exact decimals: 12.5 reads as Decimal("12.5"), never a float (money is never a float)."""


_Loader.add_constructor("tag:yaml.org,2002:float", lambda loader, node: Decimal(loader.construct_scalar(node)))


def catalog_file_read(path: Path = CATALOG_PATH) -> CatalogFile:
    try:
        data = yaml.load(path.read_text(), Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        raise CatalogFileError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise CatalogFileError(f"{path}: the top level must be a mapping")
    _known(data, {"version", "providers", "models", "alias_rules"}, "the top level")
    if not data.get("version"):
        raise CatalogFileError("version: required (bump it with every change)")
    providers = {name: _provider(name, spec) for name, spec in _mapping(data, "providers").items()}
    models = {public_id: _model(str(public_id), spec, providers)
              for public_id, spec in _mapping(data, "models").items()}
    rules = tuple(_rule(n, spec) for n, spec in enumerate(data.get("alias_rules") or []))
    names = {alias: public_id for public_id, model in models.items() for alias in (public_id, *model.aliases)}
    for public_id, model in models.items():
        for alias in model.aliases:
            if names[alias] != public_id:
                raise CatalogFileError(f"models.{public_id}.aliases: `{alias}` is already {names[alias]}")
    for n, rule in enumerate(rules):
        if rule.kind != "regex" and rule.target not in names:
            raise CatalogFileError(f"alias_rules[{n}]: target `{rule.target}` is no model id or alias")
    return CatalogFile(version=str(data["version"]), providers=providers, models=models, rules=rules)


def _mapping(data: dict, key: str) -> dict:
    value = data.get(key) or {}
    if not isinstance(value, dict):
        raise CatalogFileError(f"{key}: must be a mapping")
    return value


def _known(spec: object, allowed: set[str], where: str) -> None:
    if not isinstance(spec, dict):
        raise CatalogFileError(f"{where}: must be a mapping")
    if unknown := sorted(set(spec) - allowed):
        raise CatalogFileError(f"{where}: unknown field(s) {', '.join(unknown)}")


def _provider(name: str, spec: dict) -> ProviderSpec:
    where = f"providers.{name}"
    _known(spec, PROVIDER_KEYS, where)
    if not re.fullmatch(r"[a-z0-9-]+", str(name)):
        raise CatalogFileError(f"{where}: a provider name is lowercase letters, digits and dashes")
    if spec.get("kind") not in Provider.Kind.values:
        raise CatalogFileError(f"{where}.kind: one of {', '.join(Provider.Kind.values)}")
    if not str(spec.get("simulator", "")).startswith("/"):
        raise CatalogFileError(f"{where}.simulator: the simulator path standing in for it, e.g. /v1")
    demo = bool(spec.get("demo"))
    if not demo and not str(spec.get("base_url", "")).startswith("https://"):
        raise CatalogFileError(f"{where}.base_url: an https URL (only demo providers may go without)")
    return ProviderSpec(name=name, kind=spec["kind"], base_url=str(spec.get("base_url", "")),
                        simulator=spec["simulator"], api_key_env=str(spec.get("api_key_env", "")),
                        supports_responses=bool(spec.get("supports_responses")),
                        region=str(spec.get("region", "")),
                        connect_timeout=_seconds(spec, "connect_timeout", where),
                        read_timeout=_seconds(spec, "read_timeout", where), demo=demo)


def _seconds(spec: dict, key: str, where: str) -> float | None:
    value = spec.get(key)
    if value is not None and (not isinstance(value, int | Decimal) or value <= 0):
        raise CatalogFileError(f"{where}.{key}: a positive number of seconds")
    return None if value is None else float(value)


def _model(public_id: str, spec: dict, providers: dict[str, ProviderSpec]) -> ModelSpec:
    where = f"models.{public_id}"
    _known(spec, MODEL_KEYS, where)
    capability = spec.get("capability", CatalogModel.Capability.CHAT)
    if capability not in CatalogModel.Capability.values:
        raise CatalogFileError(f"{where}.capability: one of {', '.join(CatalogModel.Capability.values)}")
    targets = []
    for target in spec.get("targets") or []:
        provider, _, upstream = str(target).partition("/")
        if provider not in providers or not upstream:
            raise CatalogFileError(f"{where}.targets: `{target}` is not <provider>/<upstream model> of a provider "
                                   "in providers")
        if providers[provider].demo and not spec.get("demo"):
            raise CatalogFileError(f"{where}.targets: `{provider}` is a demo provider; mark the model demo: true")
        targets.append((provider, upstream))
    if not targets:
        raise CatalogFileError(f"{where}.targets: at least one <provider>/<upstream model>")
    unit = spec.get("unit", CatalogModel.PriceUnit.TOKEN)
    if unit == CatalogModel.PriceUnit.TOKEN:
        prices = spec.get("prices")
        _known(prices, set(TOKEN_PRICES), f"{where}.prices")
        if "input" not in prices or "output" not in prices:
            raise CatalogFileError(f"{where}.prices: input and output are required (credits per million tokens)")
        money = {name: _credits(prices.get(name, 0), f"{where}.prices.{name}") for name in TOKEN_PRICES}
        unit_price = 0
    elif unit in UNITS:
        if "price" not in spec:
            raise CatalogFileError(f"{where}.price: required (credits per {unit})")
        money, unit_price = {}, _credits(spec["price"], f"{where}.price")
    else:
        raise CatalogFileError(f"{where}.unit: token (the default) or one of {', '.join(sorted(UNITS))}")
    parameters = spec.get("parameters") or {}
    _json_only(parameters, f"{where}.parameters")
    return ModelSpec(
        public_id=public_id, capability=capability, targets=tuple(targets), price_unit=unit, prices=money,
        unit_price=unit_price, max_units=_count(spec, "max_units", where), parameters=parameters,
        context_window=_count(spec, "context_window", where),
        max_output_tokens=_count(spec, "max_output_tokens", where),
        aliases=tuple(str(a) for a in spec.get("aliases") or ()), intents=tuple(spec.get("intents") or ()),
        description=str(spec.get("description", "")), enabled=spec.get("enabled", True) is not False,
        demo=bool(spec.get("demo")))


def _credits(value: object, where: str) -> int:
    try:
        return credits_to_micro(value if isinstance(value, int | Decimal) else str(value))
    except (InvalidOperation, TypeError, ValueError):
        raise CatalogFileError(f"{where}: credits as a decimal number (100 credits = 1 USD)") from None


def _count(spec: dict, key: str, where: str) -> int | None:
    value = spec.get(key)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
        raise CatalogFileError(f"{where}.{key}: a positive whole number")
    return value


def _json_only(value: object, where: str) -> None:
    """Parameters are stored as JSON: decimals in them (tier prices) are written as strings."""
    if isinstance(value, Decimal):
        raise CatalogFileError(f"{where}: write decimal numbers here as strings, e.g. \"4.5\"")
    for item in value.values() if isinstance(value, dict) else value if isinstance(value, list) else ():
        _json_only(item, where)


def _rule(n: int, spec: dict) -> RuleSpec:
    where = f"alias_rules[{n}]"
    _known(spec, {*RULE_KINDS, "target", "description"}, where)
    kinds = [kind for kind in RULE_KINDS if kind in spec]
    if len(kinds) != 1 or not spec.get("target"):
        raise CatalogFileError(f"{where}: one of {', '.join(RULE_KINDS)} (the pattern) and a target")
    if kinds[0] == "regex":
        try:
            re.compile(spec["regex"])
        except re.error as exc:
            raise CatalogFileError(f"{where}.regex: {exc}") from None
    return RuleSpec(kind=kinds[0], pattern=str(spec[kinds[0]]), target=str(spec["target"]),
                    description=str(spec.get("description", "")))


# --- applying --------------------------------------------------------------------------------------------------

def _merge(subject: str, current: dict, desired: dict, loaded: dict | None, force: bool,
           changes: list[Change]) -> dict:
    """The fields to write: the file's value unless the field was edited since the file last set it."""
    values = {}
    for name, want in desired.items():
        have = current.get(name)
        if have == want:
            continue
        if loaded is not None and name in loaded and have != loaded[name] and not force:
            changes.append(Change("kept", subject, f"{name} {_shown(name, have)} was edited in admin (the file "
                                                   f"says {_shown(name, want)}; --force takes the file's)"))
            continue
        values[name] = want
        if current:
            changes.append(Change("updated", subject, f"{name} {_shown(name, have)} → {_shown(name, want)}"))
    return values


def _shown(name: str, value: object) -> str:
    if name.endswith("_price") and isinstance(value, int):
        return f"{micro_to_credits(value).normalize():f}"
    if name == "targets" and isinstance(value, list):
        return "[" + ", ".join(f"{p}/{m}" for p, m in value) + "]"
    return repr(value)


@transaction.atomic
def catalog_file_apply(catalog_file: CatalogFile, *, simulator_url: str | None = None, force: bool = False,
                       environ: dict[str, str] | None = None) -> list[Change]:
    """Make the database say what the file says (see the module docstring); the changes made or refused."""
    environ = os.environ if environ is None else environ
    simulated = simulator_url is not None
    changes: list[Change] = []
    providers = {spec.name: _provider_apply(spec, simulator_url, environ, force, changes)
                 for spec in catalog_file.providers.values() if simulated or not spec.demo}
    listed = [spec for spec in catalog_file.models.values() if simulated or not spec.demo]
    for spec in listed:
        _model_apply(spec, providers, force, changes)
    gone = CatalogModel.objects.filter(catalog_state__isnull=False, enabled=True) \
        .exclude(public_id__in=[spec.public_id for spec in listed])
    for model in gone:
        why = "a demo model, served only by the simulator" if model.public_id in catalog_file.models \
            else "no longer in the catalog file"
        changes.append(Change("disabled", f"model {model.public_id}", why))
        model.enabled, model.catalog_state = False, {**model.catalog_state, "enabled": False}  # not an admin edit
        model.save(update_fields=["enabled", "catalog_state"])
    _rules_apply(catalog_file.rules, force, changes)
    return changes


def _provider_apply(spec: ProviderSpec, simulator_url: str | None, environ, force: bool,
                    changes: list[Change]) -> Provider:
    if simulator_url is not None:
        name, base_url, key = f"simulator-{spec.name}", simulator_url.rstrip("/") + spec.simulator, SIMULATOR_KEY
    else:
        key = environ.get(spec.api_key_env, "") if spec.api_key_env else ""
        name, base_url = spec.name, spec.base_url
    provider = Provider.objects.filter(name=name).first()
    added = provider is None
    provider = provider or Provider(name=name)
    has_key = bool(key or provider.api_key_encrypted)
    desired = {"kind": spec.kind, "base_url": base_url, "supports_responses": spec.supports_responses,
               "region": spec.region, "connect_timeout": spec.connect_timeout, "read_timeout": spec.read_timeout,
               "enabled": has_key}
    current = {} if added else {name: getattr(provider, name) for name in desired}
    values = _merge(f"provider {name}", current, desired, provider.catalog_state, force, changes)
    for field_name, value in values.items():
        setattr(provider, field_name, value)
    if key and key != (provider.api_key if provider.api_key_encrypted else ""):
        provider.api_key = key
        if not added and simulator_url is None:
            changes.append(Change("updated", f"provider {name}", f"key from ${spec.api_key_env}"))
    provider.catalog_state = desired
    provider.save()
    if added:
        source = f"key from ${spec.api_key_env}" if key and simulator_url is None else \
            "the simulator" if simulator_url is not None else f"disabled until ${spec.api_key_env} is set"
        changes.append(Change("added", f"provider {name}", f"{spec.kind}, {base_url}, {source}"))
    return provider


def _model_apply(spec: ModelSpec, providers: dict[str, Provider], force: bool, changes: list[Change]) -> None:
    model = CatalogModel.objects.filter(public_id=spec.public_id).first()
    added = model is None
    model = model or CatalogModel(public_id=spec.public_id)
    desired = {
        "capability": spec.capability, "description": spec.description, "intents": ",".join(spec.intents),
        "price_unit": spec.price_unit, **{f"{name}_price": spec.prices.get(name, 0) for name in TOKEN_PRICES},
        "unit_price": spec.unit_price, "max_units": spec.max_units, "parameters": spec.parameters,
        "context_window": spec.context_window, "max_output_tokens": spec.max_output_tokens,
        "enabled": spec.enabled,
        "targets": [[providers[provider].name, upstream] for provider, upstream in spec.targets],
        "aliases": sorted(spec.aliases),
    }
    current = {} if added else {
        **{name: getattr(model, name) for name in desired if name not in ("targets", "aliases")},
        "targets": [[t.provider.name, t.upstream_model] for t in model.targets.select_related("provider")],
        "aliases": sorted(model.aliases.values_list("alias", flat=True)),
    }
    values = _merge(f"model {spec.public_id}", current, desired, model.catalog_state, force, changes)
    targets, aliases = values.pop("targets", None), values.pop("aliases", None)
    for field_name, value in values.items():
        setattr(model, field_name, value)
    model.catalog_state = desired
    model.save()
    if targets is not None:
        by_name = {provider.name: provider for provider in providers.values()}
        model.targets.all().delete()
        FallbackTarget.objects.bulk_create(
            FallbackTarget(model=model, provider=by_name[provider], upstream_model=upstream, position=position)
            for position, (provider, upstream) in enumerate(targets))
    if aliases is not None:
        model.aliases.exclude(alias__in=aliases).delete()
        for alias in aliases:
            ModelAlias.objects.update_or_create(alias=alias, defaults={"model": model})
    if added:
        changes.append(Change("added", f"model {spec.public_id}", f"{spec.capability}, {_price(spec)}"))


def _price(spec: ModelSpec) -> str:
    if spec.price_unit != CatalogModel.PriceUnit.TOKEN:
        return f"{_shown('unit_price', spec.unit_price)} credits per {spec.price_unit}"
    return f"{_shown('input_price', spec.prices['input'])} / {_shown('output_price', spec.prices['output'])} " \
           "credits per million tokens in / out"


def _rules_apply(rules: tuple[RuleSpec, ...], force: bool, changes: list[Change]) -> None:
    for position, spec in enumerate(rules):
        rule = AliasRule.objects.filter(kind=spec.kind, pattern=spec.pattern).first()
        added = rule is None
        rule = rule or AliasRule(kind=spec.kind, pattern=spec.pattern)
        desired = {"target": spec.target, "position": position * 10, "enabled": True,
                   "description": spec.description}
        current = {} if added else {name: getattr(rule, name) for name in desired}
        subject = f"rule {spec.kind} {spec.pattern}"
        for field_name, value in _merge(subject, current, desired, rule.catalog_state, force, changes).items():
            setattr(rule, field_name, value)
        rule.catalog_state = desired
        rule.save()
        if added:
            changes.append(Change("added", subject, f"→ {spec.target}"))
    listed = {(spec.kind, spec.pattern) for spec in rules}
    for rule in AliasRule.objects.filter(catalog_state__isnull=False, enabled=True):
        if (rule.kind, rule.pattern) not in listed:
            changes.append(Change("disabled", f"rule {rule.kind} {rule.pattern}",
                                  "no longer in the catalog file"))
            rule.enabled, rule.catalog_state = False, {**rule.catalog_state, "enabled": False}
            rule.save(update_fields=["enabled", "catalog_state"])
