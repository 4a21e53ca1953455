//! One test per rule of the job spec.

use super::*;
use shoal_publishers::target::LocalTarget;

const FULL: &str = r#"
name: wordcount
executor: {type: shell, command: ["wc", "-w"], env: {K: V}}
inputs:
  local: {path: /data/in}
sharding: {glob: "**/*.txt", batch_size: 4}
resources: {cpu: 2, memory: 512MiB, disk: 1GiB, timeout: 10m}
placement: {bidders: 5, replicas: 3, labels: {region: eu}}
verify: deterministic
publish: [{local: {path: results}}]
"#;

/// A valid minimal spec, one top-level key per line.
const BASE: &[(&str, &str)] = &[
    ("name", "wordcount"),
    ("executor", "{type: shell, command: [wc, -w]}"),
    ("inputs", "{inline: [{name: a.txt, content: \"one two\"}]}"),
    ("publish", "[{local: {path: results}}]"),
];

/// BASE with top-level keys replaced or added; an empty value drops the key.
fn spec_with(overrides: &[(&str, &str)]) -> String {
    let mut lines: Vec<(&str, &str)> = BASE.to_vec();
    for &(key, value) in overrides {
        match lines.iter_mut().find(|(k, _)| *k == key) {
            Some(line) => line.1 = value,
            None => lines.push((key, value)),
        }
    }
    lines
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}: {v}\n"))
        .collect()
}

/// The error for BASE with `overrides`; panics if the spec is accepted.
fn rejected(overrides: &[(&str, &str)]) -> SpecError {
    match parse(&spec_with(overrides)) {
        Ok(spec) => panic!("accepted {overrides:?}: {spec:?}"),
        Err(e) => e,
    }
}

fn assert_rejected(overrides: &[(&str, &str)], field: &str, message_part: &str) {
    let err = rejected(overrides);
    assert_eq!(err.field, field, "{err}");
    assert!(
        err.message.contains(message_part),
        "expected {message_part:?} in: {err}"
    );
}

#[test]
fn full_example_parses_into_every_field() {
    let spec = parse(FULL).unwrap();
    assert_eq!(spec.name, "wordcount");
    assert_eq!(
        spec.executor,
        Executor::Shell {
            command: vec!["wc".into(), "-w".into()],
            env: [("K".to_owned(), "V".to_owned())].into(),
        }
    );
    assert_eq!(
        spec.inputs,
        InputSource::Local {
            path: "/data/in".into()
        }
    );
    assert_eq!(spec.sharding.glob, "**/*.txt");
    assert_eq!(spec.sharding.batch_size, 4);
    assert_eq!(spec.resources.cpu, 2.0);
    assert_eq!(spec.resources.memory, ByteSize(512 << 20));
    assert_eq!(spec.resources.disk, ByteSize(1 << 30));
    assert_eq!(spec.resources.timeout, Seconds(600));
    assert_eq!(spec.placement.bidders, 5);
    assert_eq!(spec.placement.replicas, 3);
    assert_eq!(spec.placement.labels["region"], "eu");
    assert_eq!(spec.verify, Verify::Deterministic);
    assert_eq!(
        spec.publish,
        vec![Target::Local(LocalTarget {
            path: "results".into()
        })]
    );
}

#[test]
fn omitted_sections_take_their_defaults() {
    let spec = parse(&spec_with(&[])).unwrap();
    assert_eq!(spec.sharding, ShardingSpec::default());
    assert_eq!(spec.sharding.glob, "**");
    assert_eq!(spec.sharding.batch_size, 1);
    assert_eq!(spec.resources.cpu, 1.0);
    assert_eq!(spec.resources.memory, ByteSize(0));
    assert_eq!(spec.resources.disk, ByteSize(0));
    assert_eq!(spec.resources.timeout, Seconds(600));
    assert_eq!(spec.placement.bidders, 3);
    assert_eq!(spec.placement.replicas, 1);
    assert!(spec.placement.labels.is_empty());
    assert_eq!(spec.verify, Verify::None);
}

#[test]
fn partly_given_sections_default_the_rest() {
    let spec = parse(&spec_with(&[
        ("sharding", "{batch_size: 7}"),
        ("resources", "{memory: 1048576, timeout: 90}"),
    ]))
    .unwrap();
    assert_eq!(spec.sharding.glob, "**");
    assert_eq!(spec.sharding.batch_size, 7);
    assert_eq!(spec.resources.cpu, 1.0);
    assert_eq!(spec.resources.memory, ByteSize(1 << 20));
    assert_eq!(spec.resources.timeout, Seconds(90));
}

#[test]
fn url_and_inline_sources_parse() {
    let urls = parse(&spec_with(&[(
        "inputs",
        "{urls: [\"https://x.org/a.txt\", \"http://y.org/b\"]}",
    )]))
    .unwrap();
    assert_eq!(
        urls.inputs,
        InputSource::Urls(vec!["https://x.org/a.txt".into(), "http://y.org/b".into()])
    );
    let inline = parse(&spec_with(&[])).unwrap();
    assert_eq!(
        inline.inputs,
        InputSource::Inline(vec![InlineInput {
            name: "a.txt".into(),
            content: "one two".into()
        }])
    );
}

#[test]
fn spec_round_trips_through_json() {
    let spec = parse(FULL).unwrap();
    let json = serde_json::to_string(&spec).unwrap();
    assert!(json.contains("\"512MiB\""), "{json}");
    assert_eq!(JobSpec::from_json(&json).unwrap(), spec);
}

#[test]
fn resources_convert_to_the_node_wire_form() {
    let spec = parse(FULL).unwrap();
    assert_eq!(
        spec.resources(),
        Resources {
            cpu: 2.0,
            memory: 512 << 20,
            disk: 1 << 30,
            timeout_secs: 600,
        }
    );
}

#[test]
fn error_displays_as_field_colon_message() {
    let err = SpecError::new("sharding.batch_size", "must be at least 1");
    assert_eq!(err.to_string(), "sharding.batch_size: must be at least 1");
    assert_eq!(SpecError::new("", "bad").to_string(), "bad");
}

// --- document shape ---

#[test]
fn yaml_syntax_error_has_no_field_and_gives_line_and_column() {
    let err = parse("name: x\nexecutor: {type: shell\n").unwrap_err();
    assert_eq!(err.field, "");
    assert!(err.message.contains("line"), "{err}");
    assert!(err.message.contains("column"), "{err}");
}

#[test]
fn empty_document_is_rejected_naming_the_first_missing_field() {
    for doc in ["", "# nothing\n"] {
        let err = parse(doc).unwrap_err();
        assert!(
            err.to_string().starts_with("name: missing field `name`"),
            "{doc:?}: {err}"
        );
    }
}

#[test]
fn document_that_is_not_a_mapping_is_rejected() {
    let err = parse("just text").unwrap_err();
    assert_eq!(err.field, "", "{err}");
    assert!(err.message.contains("invalid type"), "{err}");
}

#[test]
fn unknown_top_level_field_is_rejected_with_its_name() {
    let err = rejected(&[("verfiy", "none")]);
    assert_eq!(err.field, "verfiy", "{err}");
    assert!(err.message.contains("unknown field `verfiy`"), "{err}");
}

#[test]
fn unknown_nested_field_is_rejected_with_its_path() {
    let err = rejected(&[("sharding", "{batch_sise: 2}")]);
    assert_eq!(
        err.to_string().split(':').next(),
        Some("sharding.batch_sise")
    );
    assert!(
        err.message.contains("batch_size"),
        "suggests the real field: {err}"
    );
}

#[test]
fn unknown_field_in_a_list_item_is_rejected_with_its_path() {
    let err = rejected(&[("publish", "[{local: {path: r, bucket: b}}]")]);
    assert_eq!(err.field, "publish[0].local.bucket", "{err}");
}

#[test]
fn unknown_executor_field_is_rejected() {
    assert_rejected(
        &[("executor", "{type: shell, command: [wc], comand: [x]}")],
        "executor.comand",
        "expected `command` or `env`",
    );
}

#[test]
fn unknown_executor_type_is_rejected() {
    let err = rejected(&[("executor", "{type: docker, command: [wc]}")]);
    assert!(err.field.starts_with("executor"), "{err}");
    assert!(err.message.contains("docker"), "{err}");
}

#[test]
fn unknown_input_source_is_rejected() {
    let err = rejected(&[("inputs", "{ftp: [x]}")]);
    assert!(err.field.starts_with("inputs"), "{err}");
    assert!(err.message.contains("ftp"), "{err}");
}

#[test]
fn two_input_sources_are_rejected() {
    assert_rejected(
        &[("inputs", "{local: {path: /d}, urls: [\"https://x.org/a\"]}")],
        "inputs",
        "exactly one source",
    );
}

#[test]
fn missing_required_field_is_named() {
    assert_rejected(&[("publish", "")], "publish", "missing field");
    assert_rejected(&[("name", "")], "name", "missing field");
    assert_rejected(
        &[("executor", "{type: shell}")],
        "executor.command",
        "missing field",
    );
}

#[test]
fn wrong_type_is_rejected_with_its_path() {
    assert_rejected(
        &[("placement", "{bidders: many}")],
        "placement.bidders",
        "invalid type",
    );
}

// --- name ---

#[test]
fn name_must_not_be_empty() {
    assert_rejected(&[("name", "\"\"")], "name", "must not be empty");
}

#[test]
fn name_is_at_most_64_characters() {
    let ok = "n".repeat(64);
    parse(&spec_with(&[("name", &ok)])).unwrap();
    let long = "n".repeat(65);
    assert_rejected(&[("name", &long)], "name", "at most 64");
}

#[test]
fn name_allows_only_letters_digits_dot_underscore_dash() {
    parse(&spec_with(&[("name", "Word_count-2.v1")])).unwrap();
    assert_rejected(&[("name", "\"word count\"")], "name", "may only contain");
    assert_rejected(&[("name", "a/b")], "name", "may only contain");
}

// --- executor ---

#[test]
fn command_must_not_be_empty() {
    assert_rejected(
        &[("executor", "{type: shell, command: []}")],
        "executor.command",
        "must name a program",
    );
}

#[test]
fn program_name_must_not_be_empty() {
    assert_rejected(
        &[("executor", "{type: shell, command: [\"\", x]}")],
        "executor.command[0]",
        "must not be empty",
    );
}

#[test]
fn env_names_must_be_valid() {
    assert_rejected(
        &[(
            "executor",
            "{type: shell, command: [wc], env: {\"A=B\": x}}",
        )],
        "executor.env",
        "not a valid variable name",
    );
}

// --- inputs ---

#[test]
fn local_path_must_not_contain_dot_dot() {
    assert_rejected(
        &[("inputs", "{local: {path: /data/../etc}}")],
        "inputs.local.path",
        "`..`",
    );
}

#[test]
fn local_path_must_be_absolute() {
    assert_rejected(
        &[("inputs", "{local: {path: data/in}}")],
        "inputs.local.path",
        "must be absolute",
    );
}

#[test]
fn url_list_must_not_be_empty() {
    assert_rejected(&[("inputs", "{urls: []}")], "inputs.urls", "at least one");
}

#[test]
fn urls_must_be_http_or_https() {
    assert_rejected(
        &[(
            "inputs",
            "{urls: [\"https://ok.org/a\", \"ftp://x.org/b\"]}",
        )],
        "inputs.urls[1]",
        "only http and https",
    );
    assert_rejected(
        &[("inputs", "{urls: [\"file:///etc/passwd\"]}")],
        "inputs.urls[0]",
        "only http and https",
    );
}

#[test]
fn urls_must_parse() {
    assert_rejected(
        &[("inputs", "{urls: [\"not a url\"]}")],
        "inputs.urls[0]",
        "not a valid URL",
    );
}

#[test]
fn inline_list_must_not_be_empty() {
    assert_rejected(
        &[("inputs", "{inline: []}")],
        "inputs.inline",
        "at least one",
    );
}

#[test]
fn inline_names_must_not_contain_dot_dot() {
    assert_rejected(
        &[("inputs", "{inline: [{name: a/../../b, content: x}]}")],
        "inputs.inline[0].name",
        "`..`",
    );
}

#[test]
fn inline_names_must_be_relative() {
    assert_rejected(
        &[("inputs", "{inline: [{name: /etc/x, content: x}]}")],
        "inputs.inline[0].name",
        "relative",
    );
}

#[test]
fn inline_names_must_not_be_empty() {
    assert_rejected(
        &[("inputs", "{inline: [{name: \"\", content: x}]}")],
        "inputs.inline[0].name",
        "must not be empty",
    );
}

#[test]
fn inline_names_must_be_plain_paths() {
    assert_rejected(
        &[("inputs", "{inline: [{name: ./a, content: x}]}")],
        "inputs.inline[0].name",
        "plain relative file path",
    );
    assert_rejected(
        &[("inputs", "{inline: [{name: a//b, content: x}]}")],
        "inputs.inline[0].name",
        "plain relative file path",
    );
}

#[test]
fn inline_names_must_be_unique() {
    assert_rejected(
        &[(
            "inputs",
            "{inline: [{name: a, content: x}, {name: b, content: y}, {name: a, content: z}]}",
        )],
        "inputs.inline[2].name",
        "also the name of inputs.inline[0]",
    );
}

// --- sharding ---

#[test]
fn batch_size_zero_is_rejected() {
    let err = rejected(&[("sharding", "{batch_size: 0}")]);
    assert_eq!(err.to_string(), "sharding.batch_size: must be at least 1");
}

#[test]
fn glob_must_parse() {
    assert_rejected(
        &[("sharding", "{glob: \"a[\"}")],
        "sharding.glob",
        "not a valid glob",
    );
}

#[test]
fn glob_must_not_be_empty() {
    assert_rejected(
        &[("sharding", "{glob: \"\"}")],
        "sharding.glob",
        "must not be empty",
    );
}

// --- resources ---

#[test]
fn timeout_zero_is_rejected() {
    assert_rejected(
        &[("resources", "{timeout: 0}")],
        "resources.timeout",
        "at least 1s",
    );
}

#[test]
fn malformed_size_is_rejected_with_its_field() {
    assert_rejected(
        &[("resources", "{memory: 12 parsecs}")],
        "resources.memory",
        "512MiB",
    );
    assert_rejected(
        &[("resources", "{disk: 1.5GiB}")],
        "resources.disk",
        "whole number",
    );
    assert_rejected(&[("resources", "{disk: -1}")], "resources.disk", "negative");
}

#[test]
fn malformed_duration_is_rejected_with_its_field() {
    assert_rejected(
        &[("resources", "{timeout: 10 minutes}")],
        "resources.timeout",
        "10m",
    );
    assert_rejected(
        &[("resources", "{timeout: 1.5}")],
        "resources.timeout",
        "whole number",
    );
}

#[test]
fn cpu_must_be_positive() {
    assert_rejected(&[("resources", "{cpu: 0}")], "resources.cpu", "positive");
    assert_rejected(&[("resources", "{cpu: -1}")], "resources.cpu", "positive");
}

// --- placement and verify ---

#[test]
fn bidders_zero_is_rejected() {
    assert_rejected(
        &[("placement", "{bidders: 0}")],
        "placement.bidders",
        "at least 1",
    );
}

#[test]
fn replicas_zero_is_rejected() {
    assert_rejected(
        &[("placement", "{replicas: 0}")],
        "placement.replicas",
        "at least 1",
    );
}

#[test]
fn replicas_above_bidders_is_rejected() {
    assert_rejected(
        &[
            ("placement", "{bidders: 2, replicas: 3}"),
            ("verify", "deterministic"),
        ],
        "placement.replicas",
        "more than placement.bidders (2)",
    );
}

#[test]
fn deterministic_verify_needs_two_replicas() {
    assert_rejected(
        &[("verify", "deterministic")],
        "verify",
        "needs placement.replicas >= 2",
    );
}

#[test]
fn several_replicas_need_deterministic_verify() {
    assert_rejected(
        &[("placement", "{replicas: 2}"), ("verify", "none")],
        "placement.replicas",
        "verify: deterministic",
    );
}

#[test]
fn deterministic_verify_with_two_replicas_is_accepted() {
    let spec = parse(&spec_with(&[
        ("placement", "{replicas: 2}"),
        ("verify", "deterministic"),
    ]))
    .unwrap();
    assert_eq!(spec.verify, Verify::Deterministic);
}

#[test]
fn unknown_verify_mode_is_rejected() {
    assert_rejected(&[("verify", "majority")], "verify", "unknown variant");
}

// --- publish ---

#[test]
fn publish_list_must_not_be_empty() {
    assert_rejected(&[("publish", "[]")], "publish", "at least one target");
}

#[test]
fn publish_path_must_be_relative() {
    assert_rejected(
        &[("publish", "[{local: {path: /srv/out}}]")],
        "publish[0].local.path",
        "must be relative",
    );
}

#[test]
fn publish_path_must_not_contain_dot_dot() {
    assert_rejected(
        &[(
            "publish",
            "[{local: {path: ok}}, {local: {path: a/../../b}}]",
        )],
        "publish[1].local.path",
        "`..`",
    );
}

#[test]
fn unknown_publish_target_is_rejected() {
    let err = rejected(&[("publish", "[{gcs: {bucket: b}}]")]);
    assert!(err.field.starts_with("publish[0]"), "{err}");
    assert!(err.message.contains("gcs"), "{err}");
}

// --- JSON ---

#[test]
fn json_unknown_field_is_rejected_with_its_path() {
    let mut value = serde_json::to_value(parse(FULL).unwrap()).unwrap();
    value["sharding"]["batch_sise"] = 3.into();
    let err = JobSpec::from_json(&value.to_string()).unwrap_err();
    assert_eq!(err.field, "sharding.batch_sise", "{err}");
}

#[test]
fn json_spec_is_validated() {
    let mut value = serde_json::to_value(parse(FULL).unwrap()).unwrap();
    value["sharding"]["batch_size"] = 0.into();
    let err = JobSpec::from_json(&value.to_string()).unwrap_err();
    assert_eq!(err.to_string(), "sharding.batch_size: must be at least 1");
}

#[test]
fn json_syntax_error_has_no_field() {
    let err = JobSpec::from_json("{\"name\": ").unwrap_err();
    assert_eq!(err.field, "", "{err}");
    assert!(err.message.contains("line 1"), "{err}");
}

#[test]
fn json_missing_field_is_named() {
    let mut value = serde_json::to_value(parse(FULL).unwrap()).unwrap();
    value.as_object_mut().unwrap().remove("publish");
    let err = JobSpec::from_json(&value.to_string()).unwrap_err();
    assert_eq!(err.field, "publish", "{err}");
}

#[test]
fn json_with_two_input_sources_is_rejected() {
    let mut value = serde_json::to_value(parse(FULL).unwrap()).unwrap();
    value["inputs"]["urls"] = serde_json::json!(["https://x.org/a"]);
    let err = JobSpec::from_json(&value.to_string()).unwrap_err();
    assert_eq!(err.field, "inputs", "{err}");
    assert!(err.message.contains("exactly one source"), "{err}");
}

#[test]
fn publish_target_with_two_kinds_is_rejected() {
    assert_rejected(
        &[("publish", "[{local: {path: a}, s3: {}}]")],
        "publish[0]",
        "exactly one key",
    );
}
