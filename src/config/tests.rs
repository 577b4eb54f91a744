use super::*;
use crate::gateway::Format;
use crate::respond::{LogoutAuth, Mode};
use crate::seal::Sealer;

#[test]
fn response_targets_name_the_failing_key() {
    assert!(err("[[respond.subject_logout]]\nname = \"kc\"\npreset = \"keycloak\"\nbase_url = \"https://kc\"")
        .contains("respond.subject_logout[0].realm"));
    assert!(
        err("[[respond.subject_logout]]\nname = \"x\"\nurl = \"https://idp/users/me\"")
            .contains("respond.subject_logout[0].url"),
        "a template without {{sub}}"
    );
    assert!(err(
        "[[respond.subject_logout]]\nname = \"x\"\nurl = \"https://idp/{sub}\"\nmethod = \"N O\""
    )
    .contains("respond.subject_logout[0].method"));
    assert!(err(
        "[[respond.webhook]]\nname = \"siem\"\nurl = \"https://siem/hook\"\nsecret = \"short\""
    )
    .contains("respond.webhook[0].secret"));
    assert!(err("[[respond.webhook]]\nname = \"denylist\"\nurl = \"https://siem/hook\"\nsecret = \"0123456789abcdef\"")
        .contains("respond.webhook[0].name"));
    assert!(err(
        "[respond.alerts]\nformat = \"set\"\nset_issuer = \"https://tw\"\nset_key = \"c2hvcnQ=\""
    )
    .contains("respond.alerts.set_key"));
    assert!(err("[respond.brake]\nmax_active_fraction = 2.0")
        .contains("respond.brake.max_active_fraction"));
    let c = Config::from_toml(
        "[[respond.subject_logout]]\nname = \"kc\"\npreset = \"keycloak\"\nbase_url = \"https://kc.example\"\nrealm = \"acme\"\n[respond.subject_logout.client_credentials]\ntoken_url = \"https://kc.example/realms/acme/protocol/openid-connect/token\"\nclient_id = \"tokenwatch\"\nclient_secret = \"s\"",
    )
    .unwrap();
    let l = &c.respond.logouts[0];
    assert_eq!(
        l.url,
        "https://kc.example/admin/realms/acme/users/{sub}/logout"
    );
    assert!(matches!(l.auth, LogoutAuth::ClientCredentials { .. }));
    assert!(
        c.respond.denylist.is_some() && c.respond.alerts.is_some(),
        "on by default"
    );
}

fn err(text: &str) -> String {
    Config::from_toml(text).unwrap_err().to_string()
}

#[test]
fn defaults_are_valid() {
    let c = Config::from_toml("").unwrap();
    assert_eq!(c.kafka.telemetry_topic, "tokenwatch.telemetry");
    assert_eq!(c.respond.mode, Mode::Revoke);
}

#[test]
fn an_audience_listens_apart_only_on_an_address_of_its_own() {
    let c = Config::from_toml("").unwrap();
    assert_eq!((c.http.listen.edge, c.http.listen.metrics), (None, None));
    let c = Config::from_toml(
        "[http]\nlisten = \"0.0.0.0:9464\"\nedge_listen = \"0.0.0.0:9465\"\nmetrics_listen = \"0.0.0.0:9466\"",
    )
    .unwrap();
    assert_eq!(c.http.listen.edge.unwrap().port(), 9465);
    assert_eq!(c.http.listen.metrics.unwrap().port(), 9466);
    let clash = err("[http]\nlisten = \"0.0.0.0:9464\"\nedge_listen = \"0.0.0.0:9464\"");
    assert!(clash.contains("http.edge_listen"), "{clash}");
    let clash = err("[http]\nlisten = \"0.0.0.0:9464\"\nmetrics_listen = \"0.0.0.0:9464\"");
    assert!(clash.contains("http.metrics_listen"), "{clash}");
}

#[test]
fn errors_name_the_key() {
    assert!(err("[detect]\nplausible_speed_kmh = 5").contains("detect.plausible_speed_kmh"));
    assert!(err("[detect]\nmax_tokens = 0").contains("detect.max_tokens"));
    assert!(err("[http]\nlisten = \"nonsense\"").contains("http.listen"));
    assert!(err("[http]\nadmin_token = \"short\"").contains("http.admin_token"));
    assert!(err("[http]\nmax_body_bytes = 1").contains("http.max_body_bytes"));
    assert!(err("[http]\nedge_listen = \"x\"").contains("http.edge_listen"));
    assert!(err("[http]\ngrpc_listen = \"x\"").contains("http.grpc_listen"));
    let clash = err("[http]\nlisten = \"0.0.0.0:9464\"\ngrpc_listen = \"0.0.0.0:9464\"");
    assert!(clash.contains("http.grpc_listen"), "{clash}");
    assert!(err("[http]\nmax_connections = 0").contains("http.max_connections"));
    assert!(err("[http]\nrequest_timeout = \"0s\"").contains("http.request_timeout"));
    assert!(err("[http]\nheader_read_timeout = \"1h\"").contains("http.header_read_timeout"));
    assert!(err("[respond.brake]\nmax_revocations = 0").contains("respond.brake.max_revocations"));
    assert!(err("[respond.retry]\nmax_backoff = \"0s\"").contains("respond.retry.max_backoff"));
    assert!(err("[respond.retry]\nbudget = \"30d\"").contains("respond.retry.budget"));
    assert!(err("[kafka]\nbrokers = \"\"").contains("kafka.brokers"));
    assert!(
        err("[kafka.properties]\n\"enable.auto.commit\" = \"true\"").contains("kafka.properties")
    );
    let typo = err("[kafka]\nbrokrs = \"x\"");
    assert!(typo.contains("brokrs"), "{typo}");
    let wrong_type = err("[detect]\nmax_tokens = \"many\"");
    assert!(wrong_type.contains("max_tokens"), "{wrong_type}");
    assert!(
        err("[respond.rfc7009]\nurl = \"ftp://x\"\nclient_id = \"a\"\nclient_secret = \"b\"")
            .contains("respond.rfc7009.url")
    );
}

#[test]
fn gateway_inputs_are_checked() {
    let key = "hash_key = \"0123456789abcdef0123\"\n";
    let ok = Config::from_toml(&format!(
        "[gateway]\n{key}trusted_proxies = [\"10.0.0.0/8\"]\n[[gateway.inputs]]\ntopic = \"nginx.access\"\nformat = \"nginx\""
    ))
    .unwrap();
    assert_eq!(ok.gateway.inputs[0].format, Format::Nginx);
    assert!(
        err("[[gateway.inputs]]\ntopic = \"a\"\nformat = \"envoy\"").contains("gateway.hash_key")
    );
    assert!(err(&format!(
        "[gateway]\n{key}[[gateway.inputs]]\ntopic = \"a\"\nformat = \"mapped\""
    ))
    .contains("gateway.inputs.mapping"));
    assert!(err(&format!(
        "[gateway]\n{key}[[gateway.inputs]]\ntopic = \"a\"\nformat = \"mapped\"\n[gateway.inputs.mapping]\nts = \"/t\""
    ))
    .contains("must be mapped"));
    assert!(
        err("[gateway]\ntrusted_proxies = [\"10.0.0.0/33\"]").contains("gateway.trusted_proxies")
    );
    assert!(err(&format!(
        "[gateway]\n{key}[[gateway.inputs]]\ntopic = \"a\"\nformat = \"apache\""
    ))
    .contains("apache"));
}

#[test]
fn revoke_mode_with_rfc7009_needs_seal_keys() {
    let text = "[respond.rfc7009]\nurl = \"http://127.0.0.1:1/revoke\"\nclient_id = \"tw\"\nclient_secret = \"s\"";
    assert!(err(text).contains("respond.seal_keys"));
    let key = Sealer::generate_key();
    let ok = format!("{text}\n[respond.seal_keys]\nk1 = \"{key}\"");
    assert!(Config::from_toml(&ok).unwrap().respond.sealer.is_some());
}
