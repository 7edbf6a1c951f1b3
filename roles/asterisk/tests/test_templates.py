"""The role's templates rendered by real Ansible with one trunk model, for both SIP drivers.

Both drivers are also verified live in Molecule: PJSIP on Asterisk 22 (scenario default), chan_sip on
Asterisk 20 built from source (scenario chan_sip).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from conftest import parse_asterisk_conf, run_playbook, section, values

TRUNK = {
    "name": "provider",
    "host": "198.51.100.7",
    "port": 5080,
    "username": "5215550001234",
    "secret": "s3cret;with-semicolon",
    "register": True,
    "from_user": "5215550001234",
    "from_domain": "sip.voip-provider.example",
    "codecs": ["ulaw", "alaw", "g722"],
    "context": "from-voip",
    "provider_networks": ["198.51.100.7", "198.51.100.8/32", "203.0.113.0/28"],
    "qualify_seconds": 30,
    "language": "es",
}
NAT = {"external_address": "203.0.113.20", "local_nets": ["10.0.0.0/8", "192.168.0.0/16"]}
ARI_HASH = "$6$0123456789abcdef$" + "x" * 86
METRICS_PASSWORD = "Q7mfx2LpTz9vW4"  # what configure.yml reads from the vault or the box's secret file


def render(tmp_path: Path, driver: str, **overrides: object) -> dict[str, str]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    extra = {
        "render_dir": str(tmp_path),
        "asterisk_effective_sip_driver": driver,
        "asterisk_sip_trunk": TRUNK,
        "asterisk_sip_nat": NAT,
        "asterisk_ari_password_hash": ARI_HASH,
        "asterisk_prometheus_effective_password": METRICS_PASSWORD,
        "asterisk_operator_dial": "PJSIP/5215550009999@provider",
        **overrides,
    }
    result = run_playbook("render.yml", extra, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    return {p.name: p.read_text() for p in tmp_path.glob("*.conf")}


@pytest.fixture(scope="module")
def chan_sip(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return render(tmp_path_factory.mktemp("chan_sip"), "chan_sip")


@pytest.fixture(scope="module")
def pjsip(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return render(tmp_path_factory.mktemp("pjsip"), "pjsip")


def test_each_driver_renders_only_its_own_sip_files(chan_sip, pjsip):
    common = {"extensions.conf", "http.conf", "ari.conf", "modules.conf", "logger.conf", "rtp.conf", "prometheus.conf"}
    assert set(chan_sip) == common | {"sip.conf"}
    assert set(pjsip) == common | {"pjsip.conf", "pjsip_trunk.conf"}


def test_every_file_starts_with_the_managed_header(chan_sip, pjsip):
    for files in (chan_sip, pjsip):
        for name, text in files.items():
            assert text.startswith(";\n; Ansible managed"), name


def test_sip_conf_general_has_the_safe_defaults(chan_sip):
    general = dict(section(parse_asterisk_conf(chan_sip["sip.conf"]), "[general]"))
    assert general["allowguest"] == "no"
    assert general["alwaysauthreject"] == "yes"
    assert general["context"] == "centralita-refuse"
    assert general["udpbindaddr"] == "0.0.0.0:5060"
    assert general["externaddr"] == "203.0.113.20"
    assert general["language"] == "es"


def test_sip_conf_general_keeps_every_codec_and_localnet_in_order(chan_sip):
    general = section(parse_asterisk_conf(chan_sip["sip.conf"]), "[general]")
    assert values(general, "disallow") == ["all"]
    assert values(general, "allow") == ["ulaw", "alaw", "g722"]
    assert values(general, "localnet") == ["10.0.0.0/8", "192.168.0.0/16"]


def test_sip_conf_registers_with_the_escaped_secret(chan_sip):
    general = section(parse_asterisk_conf(chan_sip["sip.conf"]), "[general]")
    assert values(general, "register") == ["5215550001234:s3cret\\;with-semicolon@198.51.100.7:5080/5215550001234"]


def test_sip_conf_peer_carries_the_trunk(chan_sip):
    conf = parse_asterisk_conf(chan_sip["sip.conf"])
    template = dict(section(conf, "[provider-template](!)"))
    assert template["type"] == "peer"
    assert template["port"] == "5080"
    assert template["context"] == "from-voip"
    assert template["insecure"] == "port,invite"
    assert template["defaultuser"] == "5215550001234"
    assert template["remotesecret"] == "s3cret\\;with-semicolon"
    assert template["fromuser"] == "5215550001234"
    assert template["fromdomain"] == "sip.voip-provider.example"
    # Only the provider's server is qualified (qualify_seconds), never the other addresses of its networks.
    assert template["qualify"] == "no"
    assert dict(section(conf, "[provider](provider-template)")) == {
        "host": "198.51.100.7",
        "qualify": "yes",
        "qualifyfreq": "30",
    }


def test_sip_conf_without_qualify_seconds_does_not_qualify(tmp_path):
    files = render(tmp_path, "chan_sip", asterisk_sip_trunk={**TRUNK, "qualify_seconds": 0})
    conf = parse_asterisk_conf(files["sip.conf"])
    assert dict(section(conf, "[provider](provider-template)")) == {"host": "198.51.100.7"}
    assert dict(section(conf, "[provider-template](!)"))["qualify"] == "no"


def test_sip_conf_admits_only_the_provider_networks(chan_sip):
    template = section(parse_asterisk_conf(chan_sip["sip.conf"]), "[provider-template](!)")
    assert values(template, "deny") == ["0.0.0.0/0.0.0.0"]
    assert values(template, "permit") == ["198.51.100.7", "198.51.100.8/32", "203.0.113.0/28"]


def extra_peers(text: str) -> dict[str, dict[str, str]]:
    """The peers other than [provider] that inherit the trunk template: name -> options."""
    conf = parse_asterisk_conf(text)
    return {
        name: dict(pairs)
        for name, pairs in conf
        if name.endswith("(provider-template)") and name != "[provider](provider-template)"
    }


def test_sip_conf_gives_every_provider_address_a_peer_ranges_included(chan_sip):
    # chan_sip matches an INVITE to a peer only by its exact source address: permit/deny never make a range
    # match. So 198.51.100.8 and each of the 16 addresses of 203.0.113.0/28 get a peer; the host has [provider].
    peers = extra_peers(chan_sip["sip.conf"])
    hosts = [options["host"] for options in peers.values()]
    assert sorted(hosts) == sorted(["198.51.100.8"] + [f"203.0.113.{i}" for i in range(16)])
    assert len(set(peers)) == len(peers) == 17
    assert all(set(options) == {"host"} for options in peers.values())  # the rest (context, insecure) inherited


def test_sip_conf_range_peers_are_stable_and_not_duplicated(tmp_path):
    trunk = {**TRUNK, "host": "203.0.113.1", "provider_networks": ["203.0.113.0/30", "203.0.113.2", "2001:db8::/126"]}
    first = extra_peers(render(tmp_path / "a", "chan_sip", asterisk_sip_trunk=trunk)["sip.conf"])
    second = extra_peers(render(tmp_path / "b", "chan_sip", asterisk_sip_trunk=trunk)["sip.conf"])
    assert first == second
    hosts = [options["host"] for options in first.values()]
    assert hosts == [
        "203.0.113.0",
        "203.0.113.2",
        "203.0.113.3",
        "2001:db8::",
        "2001:db8::1",
        "2001:db8::2",
        "2001:db8::3",
    ]


def test_sip_conf_allows_guests_only_when_asked(tmp_path):
    files = render(tmp_path, "chan_sip", asterisk_sip_allow_guest=True)
    general = dict(section(parse_asterisk_conf(files["sip.conf"]), "[general]"))
    assert general["allowguest"] == "yes"
    assert general["alwaysauthreject"] == "yes"


def test_pjsip_endpoint_carries_the_same_trunk(pjsip):
    conf = parse_asterisk_conf(pjsip["pjsip_trunk.conf"])
    endpoints = [dict(pairs) for name, pairs in conf if name == "[provider]" and ("type", "endpoint") in pairs]
    assert len(endpoints) == 1
    endpoint = endpoints[0]
    assert endpoint["context"] == "from-voip"
    assert endpoint["allow"] == "ulaw,alaw,g722"
    assert endpoint["disallow"] == "all"
    assert endpoint["outbound_auth"] == "provider-auth"
    assert endpoint["from_user"] == "5215550001234"
    assert endpoint["from_domain"] == "sip.voip-provider.example"
    assert endpoint["identify_by"] == "ip"
    assert endpoint["direct_media"] == "no"


def test_pjsip_identifies_and_admits_only_the_provider(pjsip):
    conf = parse_asterisk_conf(pjsip["pjsip_trunk.conf"])
    identify = section(conf, "[provider-identify]")
    assert values(identify, "match") == ["198.51.100.7", "198.51.100.8/32", "203.0.113.0/28"]
    acl = section(conf, "[provider-acl]")
    assert values(acl, "deny") == ["0.0.0.0/0.0.0.0", "::/0"]
    assert values(acl, "permit") == ["198.51.100.7", "198.51.100.8/32", "203.0.113.0/28"]
    assert not [name for name, _ in conf if name == "[anonymous]"]


def test_pjsip_registration_and_auth(pjsip):
    conf = parse_asterisk_conf(pjsip["pjsip_trunk.conf"])
    auth = dict(section(conf, "[provider-auth]"))
    assert auth["username"] == "5215550001234"
    assert auth["password"] == "s3cret\\;with-semicolon"
    registration = dict(section(conf, "[provider-registration]"))
    assert registration["server_uri"] == "sip:198.51.100.7:5080"
    assert registration["client_uri"] == "sip:5215550001234@sip.voip-provider.example"
    assert registration["outbound_auth"] == "provider-auth"


def test_pjsip_transport_with_nat(pjsip):
    conf = parse_asterisk_conf(pjsip["pjsip.conf"])
    transport = section(conf, "[transport-udp]")
    assert dict(transport)["bind"] == "0.0.0.0:5060"
    assert dict(transport)["external_media_address"] == "203.0.113.20"
    assert dict(transport)["external_signaling_address"] == "203.0.113.20"
    assert values(transport, "local_net") == ["10.0.0.0/8", "192.168.0.0/16"]
    assert "#include pjsip_trunk.conf" in pjsip["pjsip.conf"]


def test_pjsip_without_registration_or_auth(tmp_path):
    trunk = {"host": "198.51.100.7"}
    files = render(tmp_path, "pjsip", asterisk_sip_trunk=trunk, asterisk_sip_nat={})
    conf = parse_asterisk_conf(files["pjsip_trunk.conf"])
    headers = [name for name, _ in conf]
    assert "[provider-registration]" not in headers
    assert "[provider-auth]" not in headers
    assert values(section(conf, "[provider-identify]"), "match") == ["198.51.100.7"]
    assert "external_media_address" not in files["pjsip.conf"]


def test_pjsip_guest_policy_creates_the_anonymous_endpoint_only_when_asked(tmp_path):
    files = render(tmp_path, "pjsip", asterisk_sip_allow_guest=True)
    conf = parse_asterisk_conf(files["pjsip_trunk.conf"])
    assert dict(section(conf, "[anonymous]"))["context"] == "from-voip"
    assert "[provider-acl]" not in [name for name, _ in conf]


CALLER_INPUT = re.compile(r"\$\{(EXTEN|CALLERID\((num|name|dnid)\))\}")


@pytest.mark.parametrize("driver", ["chan_sip", "pjsip"])
def test_every_caller_input_in_the_dialplan_is_filtered(driver, chan_sip, pjsip):
    text = (chan_sip if driver == "chan_sip" else pjsip)["extensions.conf"]
    uses = 0
    for line in text.splitlines():
        for match in CALLER_INPUT.finditer(line):
            uses += 1
            before = line[: match.start()]
            assert before.endswith(("FILTER(0-9+,", "FILTER(0-9A-Za-z\\x20,")), line
    assert uses >= 4


def test_from_voip_sends_every_number_to_stasis(pjsip):
    conf = parse_asterisk_conf(pjsip["extensions.conf"])
    inbound = section(conf, "[from-voip]")
    stasis = [v for k, v in inbound if k == "same" and "Stasis(" in v]
    assert stasis == ["n,Stasis(centralita,inbound,${CENTRALITA_DID})"] * 2
    extens = [v.split(",", 1)[0] for k, v in inbound if k == "exten"]
    assert extens == ["_[+0-9a-zA-Z].", "s"]
    assert not values(inbound, "include")


def test_the_call_over_the_box_limit_goes_to_the_failover_context_before_stasis(tmp_path):
    files = render(tmp_path, "pjsip", asterisk_max_calls=7)
    conf = parse_asterisk_conf(files["extensions.conf"])
    assert dict(section(conf, "[globals]"))["CENTRALITA_MAX_CALLS"] == "7"
    steps = values(section(conf, "[from-voip]"), "same")
    count = steps.index("n,GotoIf($[${GROUP_COUNT(assistant@centralita)} <= ${CENTRALITA_MAX_CALLS}]?assistant)")
    assert steps[count - 1] == "n,Set(GROUP(centralita)=assistant)"  # the call itself is counted first
    assert steps[count + 1 : count + 3] == [
        "n,Set(CENTRALITA_FAILOVER_REASON=box_full)",
        "n,Goto(centralita-unavailable,s,1)",
    ]
    # Leaving the assistant (failover, operator) frees the place; the dialer's answered calls take one.
    for context in ("[centralita-unavailable]", "[centralita-operator]"):
        lines = values(section(conf, context), "exten") + values(section(conf, context), "same")
        assert any(line.endswith(",Set(GROUP(centralita)=)") for line in lines), context
    assert "n,Set(GROUP(centralita)=assistant)" in values(section(conf, "[centralita-outbound-amd]"), "same")


def test_a_number_over_its_own_limits_is_told_to_call_later_and_never_rings_the_operator(pjsip):
    steps = values(section(parse_asterisk_conf(pjsip["extensions.conf"]), "[centralita-unavailable]"), "same")
    flood = next(i for i, step in enumerate(steps) if step.startswith("n(flood),"))
    assert steps[flood + 1 :] == ["n,Answer()", "n,Playback(centralita/demasiadas-llamadas)", "n,Hangup()"]
    assert not any("centralita-operator" in step for step in steps[flood:])
    assert any('"caller_busy"' in step and '"caller_rate"' in step and "?flood" in step for step in steps[:flood])


@pytest.mark.parametrize(
    ("driver", "dial"),
    [
        ("pjsip", "Dial(PJSIP/${CENTRALITA_NUMBER}@${CENTRALITA_TRUNK},45)"),
        ("chan_sip", "Dial(SIP/${CENTRALITA_TRUNK}/${CENTRALITA_NUMBER},45)"),
    ],
)
def test_outbound_context_dials_through_the_trunk_with_the_right_driver(driver, dial, chan_sip, pjsip):
    text = (chan_sip if driver == "chan_sip" else pjsip)["extensions.conf"]
    outbound = section(parse_asterisk_conf(text), "[centralita-outbound]")
    assert f"n,{dial}" in values(outbound, "same")


def test_operator_context_dials_the_configured_operator(pjsip):
    conf = parse_asterisk_conf(pjsip["extensions.conf"])
    assert dict(section(conf, "[globals]"))["CENTRALITA_OPERATOR_DIAL"] == "PJSIP/5215550009999@provider"
    operator = values(section(conf, "[centralita-operator]"), "same")
    assert "n,Dial(${CENTRALITA_OPERATOR_DIAL},${CENTRALITA_OPERATOR_TIMEOUT})" in operator


def test_echo_test_extension_only_when_configured(tmp_path, pjsip):
    assert "Echo()" not in pjsip["extensions.conf"]
    files = render(tmp_path, "pjsip", asterisk_echo_test_extension="6000")
    inbound = section(parse_asterisk_conf(files["extensions.conf"]), "[from-voip]")
    assert values(inbound, "exten")[0].startswith("6000,1,")


def test_ari_and_http_are_loopback_only_with_a_crypt_password(pjsip):
    http = dict(section(parse_asterisk_conf(pjsip["http.conf"]), "[general]"))
    assert http["bindaddr"] == "127.0.0.1"
    assert http["bindport"] == "8088"
    assert http["tlsenable"] == "no"
    user = dict(section(parse_asterisk_conf(pjsip["ari.conf"]), "[centralita]"))
    assert user["password_format"] == "crypt"
    assert user["password"] == ARI_HASH


@pytest.mark.parametrize(
    ("driver", "required", "noloaded"),
    [("pjsip", "chan_pjsip.so", ["chan_sip.so"]), ("chan_sip", "chan_sip.so", ["chan_pjsip.so", "res_pjsip.so"])],
)
def test_modules_conf_loads_one_sip_driver(driver, required, noloaded, chan_sip, pjsip):
    modules = section(parse_asterisk_conf((chan_sip if driver == "chan_sip" else pjsip)["modules.conf"]), "[modules]")
    assert required in values(modules, "require")
    assert required not in values(modules, "noload")
    for module in noloaded:
        assert module in values(modules, "noload")
    assert "res_ari.so" in values(modules, "require")


@pytest.mark.parametrize("driver", ["pjsip", "chan_sip"])
def test_asterisks_own_metrics_are_on_with_basic_authentication_and_the_module_required(driver, chan_sip, pjsip):
    files = chan_sip if driver == "chan_sip" else pjsip
    general = dict(section(parse_asterisk_conf(files["prometheus.conf"]), "[general]"))
    assert general["enabled"] == "yes"
    assert general["uri"] == "metrics"
    assert general["auth_username"] == "prometheus"
    assert general["auth_password"] == METRICS_PASSWORD
    assert general["core_metrics_enabled"] == "yes"
    modules = section(parse_asterisk_conf(files["modules.conf"]), "[modules]")
    assert "res_prometheus.so" in values(modules, "require")
    assert "res_prometheus.so" not in values(modules, "noload")
    # Served by the HTTP server ARI uses, which listens on the loopback address only.
    assert dict(section(parse_asterisk_conf(files["http.conf"]), "[general]"))["bindaddr"] == "127.0.0.1"


def test_asterisks_own_metrics_can_be_turned_off(tmp_path):
    files = render(
        tmp_path,
        "pjsip",
        asterisk_prometheus_enabled=False,
        asterisk_prometheus_uri="stats/asterisk",
        asterisk_prometheus_user="scraper",
    )
    general = dict(section(parse_asterisk_conf(files["prometheus.conf"]), "[general]"))
    assert general["enabled"] == "no"
    assert (general["uri"], general["auth_username"]) == ("stats/asterisk", "scraper")
    modules = section(parse_asterisk_conf(files["modules.conf"]), "[modules]")
    assert "res_prometheus.so" in values(modules, "noload")
    assert "res_prometheus.so" not in values(modules, "require")


def test_logger_writes_full_and_security(pjsip):
    logfiles = dict(section(parse_asterisk_conf(pjsip["logger.conf"]), "[logfiles]"))
    assert logfiles["full"] == "notice,warning,error,verbose(3),dtmf"
    assert logfiles["security"] == "security"
    assert "security" in logfiles["messages"].split(",")


def test_alone_the_box_has_no_trace_of_a_sip_front_and_never_refuses_with_503(pjsip):
    trunk = pjsip["pjsip_trunk.conf"]
    assert "outbound_proxy" not in trunk
    assert dict(section(parse_asterisk_conf(trunk), "[provider]"))["rewrite_contact"] == "yes"
    assert "Hangup(34)" not in pjsip["extensions.conf"]
    assert "refused with 503" not in pjsip["extensions.conf"]


SIP_FRONT = {"asterisk_sip_front": ["10.0.0.10", "10.0.0.9"], "asterisk_sip_trunk": {**TRUNK, "register": False}}


def test_behind_a_sip_front_the_trunk_trusts_the_proxies_and_calls_out_through_the_first(tmp_path):
    files = render(tmp_path, "pjsip", asterisk_sip_front_port=5070, **SIP_FRONT)
    conf = parse_asterisk_conf(files["pjsip_trunk.conf"])
    assert values(section(conf, "[provider-identify]"), "match") == ["10.0.0.10", "10.0.0.9"]
    assert values(section(conf, "[provider-acl]"), "permit") == ["10.0.0.10", "10.0.0.9"]
    endpoint = next(dict(pairs) for name, pairs in conf if name == "[provider]" and ("type", "endpoint") in pairs)
    assert endpoint["rewrite_contact"] == "no"
    assert endpoint["outbound_proxy"] == "sip:10.0.0.10:5070\\;lr"
    aor = next(dict(pairs) for name, pairs in conf if name == "[provider]" and ("type", "aor") in pairs)
    assert aor["outbound_proxy"] == "sip:10.0.0.10:5070\\;lr"
    assert aor["contact"] == "sip:198.51.100.7:5080"


def test_behind_a_sip_front_outbound_calls_can_go_straight_to_the_trunk(tmp_path):
    files = render(tmp_path, "pjsip", asterisk_outbound_via_sip_front=False, **SIP_FRONT)
    assert "outbound_proxy" not in files["pjsip_trunk.conf"]
    conf = parse_asterisk_conf(files["pjsip_trunk.conf"])
    assert values(section(conf, "[provider-identify]"), "match") == ["10.0.0.10", "10.0.0.9"]


@pytest.mark.parametrize(
    ("front", "when_full", "refuses"),
    [([], "auto", False), (["10.0.0.10"], "auto", True), ([], "refuse", True), (["10.0.0.10"], "failover", False)],
)
def test_a_full_box_refuses_with_503_behind_a_front_and_fails_over_alone(tmp_path, front, when_full, refuses):
    trunk = {**TRUNK, "register": False}
    files = render(
        tmp_path,
        "pjsip",
        asterisk_sip_front=front,
        asterisk_sip_trunk=trunk,
        asterisk_max_calls=3,
        asterisk_when_full=when_full,
        asterisk_echo_test_extension="6000",
    )
    conf = parse_asterisk_conf(files["extensions.conf"])
    assert dict(section(conf, "[globals]"))["CENTRALITA_MAX_CALLS"] == "3"
    steps = values(section(conf, "[from-voip]"), "same")
    check = "${GROUP_COUNT(assistant@centralita)} <= ${CENTRALITA_MAX_CALLS}"
    # Every entry of the trunk's context (the echo test, any number, no number) counts the call, then checks.
    counted = [i for i, step in enumerate(steps) if check in step]
    assert len(counted) == 3
    for index in counted:
        assert steps[index - 1] == "n,Set(GROUP(centralita)=assistant)"
        over = steps[index + 1 : index + 3]
        if refuses:
            assert over[0].startswith("n,Log(WARNING,Centralita: box full (${CENTRALITA_MAX_CALLS} calls)")
            assert over[1] == "n,Hangup(34)"
        else:
            assert over == ["n,Set(CENTRALITA_FAILOVER_REASON=box_full)", "n,Goto(centralita-unavailable,s,1)"]


# The module that provides each application and function the dialplan uses (Asterisk 20 and 22).
DIALPLAN_MODULES = {
    "Dial": "app_dial",
    "Echo": "app_echo",
    "Playback": "app_playback",
    "AMD": "app_amd",
    "MixMonitor": "app_mixmonitor",
    "Log": "app_verbose",
    "Stasis": "app_stasis",
    "FILTER": "func_strings",
    "CALLERID": "func_callerid",
    "CHANNEL": "func_channel",
    "IF": "func_logic",
    "GROUP": "func_groupcount",
    "GROUP_COUNT": "func_groupcount",
}
# Applications and functions of the core (pbx, pbx_builtins, the expression parser): always there.
CORE = {"NoOp", "Set", "Goto", "GotoIf", "Answer", "Hangup", "Progress"}


def test_every_application_and_function_of_the_dialplan_is_built_from_source_and_loaded(chan_sip):
    """A source build carries only the modules it lists: a dialplan that uses one it lacks fails at call time
    ("Function GROUP not registered") and the caller hears the wrong thing, so each name maps to a module that
    the source build compiles and modules.conf requires."""
    role_vars = yaml.safe_load((Path(__file__).parents[1] / "vars" / "main.yml").read_text())
    built = set(role_vars["asterisk_source_modules_required"])
    required = set(role_vars["asterisk_required_modules"]["common"])
    dialplan = chan_sip["extensions.conf"]
    used = set(re.findall(r"\b([A-Z][A-Za-z_]*)\(", dialplan)) - CORE
    assert {"GROUP", "GROUP_COUNT", "Stasis", "Playback"} <= used
    unknown = used - DIALPLAN_MODULES.keys()
    assert not unknown, f"map these to their module in DIALPLAN_MODULES: {sorted(unknown)}"
    for name in used:
        module = DIALPLAN_MODULES[name]
        assert module in built, f"{name} needs {module}, which the source build does not compile"
    for module in ("func_groupcount", "func_strings", "func_callerid"):
        assert f"{module}.so" in required, f"{module}.so must be required in modules.conf"


# --- the bridge's workers (asterisk_stasis_workers, from bridge_workers) ------------------------------------------


@pytest.fixture(scope="module")
def three_workers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return render(tmp_path_factory.mktemp("workers"), "chan_sip", asterisk_stasis_workers=3)


def walk(steps: list[str], start: str, registered: set[str], counts: dict[int, int]) -> tuple[list[str], str]:
    """Run the unrolled dialplan of one extension from the step after ``start`` as Asterisk would, for the parts
    the workers' spread uses: GROUP_COUNT of each worker (``counts``), Stasis() FAILED unless its app is in
    ``registered``. The Stasis apps tried, in order, and where the call went (``done`` or a Goto target)."""
    labels = {step.split(")", 1)[0][2:]: index for index, step in enumerate(steps) if step.startswith("n(")}
    variables: dict[str, str] = {}
    tried: list[str] = []

    def expand(text: str) -> str:
        text = re.sub(r"\$\{GROUP_COUNT\((\d+)@centralita-worker\)\}", lambda m: str(counts.get(int(m[1]), 0)), text)
        for _ in range(3):
            text = re.sub(r"\$\{(CENTRALITA_[A-Z_]+|STASISSTATUS)\}", lambda m: variables.get(m[1], ""), text)
            text = re.sub(
                r"\$\{GROUP_COUNT\((\d+)@centralita-worker\)\}", lambda m: str(counts.get(int(m[1]), 0)), text
            )
            text = re.sub(r"\$\[(\d+) < (\d+)\]", lambda m: "1" if int(m[1]) < int(m[2]) else "0", text)
            text = re.sub(r"\$\[(\d+) >= (\d+)\]", lambda m: "1" if int(m[1]) >= int(m[2]) else "0", text)
            text = re.sub(r"\$\[(\d+) \+ (\d+)\]", lambda m: str(int(m[1]) + int(m[2])), text)
            text = re.sub(r"\$\[(\d+) % (\d+) \+ 1\]", lambda m: str(int(m[1]) % int(m[2]) + 1), text)
            text = re.sub(r"\$\{IF\(\$\[?([01])\]?\?([^:]+):([^)]+)\)\}", lambda m: m[2] if m[1] == "1" else m[3], text)
            text = re.sub(r"\$\{IF\(([01])\?([^:]+):([^)]+)\)\}", lambda m: m[2] if m[1] == "1" else m[3], text)
        return text

    index = steps.index(start) + 1
    for _ in range(200):
        step = steps[index].split(",", 1)[1] if steps[index].startswith("n") else steps[index]
        application, _, arguments = step.partition("(")
        arguments = arguments[:-1]
        if application == "Set":
            name, value = arguments.split("=", 1)
            if not name.startswith("GROUP("):
                variables[name] = expand(value)
        elif application == "Stasis":
            app = expand(arguments).split(",", 1)[0]
            tried.append(app)
            variables["STASISSTATUS"] = "SUCCESS" if app in registered else "FAILED"
        elif application == "GotoIf":
            condition, _, target = arguments.partition("?")
            condition = expand(condition)
            if condition.startswith('$["'):
                left, right = re.findall(r'"([^"]*)"', condition)
                holds = (left != right) if "!=" in condition else (left == right)
            else:
                holds = condition in ("$[1]", "1")
            if holds:
                index = labels[target]
                continue
        elif application == "Goto":
            target = expand(arguments)
            if target in labels:
                index = labels[target]
                continue
            return tried, target
        elif application in ("NoOp",):
            pass
        elif application == "Hangup":
            return tried, "done"
        index += 1
    raise AssertionError("the dialplan loops")


def worker_steps(files: dict[str, str], context: str, exten: str = "s") -> list[str]:
    pairs = section(parse_asterisk_conf(files["extensions.conf"]), f"[{context}]")
    steps: list[str] = []
    inside = False
    for key, value in pairs:
        if key == "exten":
            inside = value.split(",", 1)[0] == exten
            if inside:
                steps.append("n" + value[len(exten) + 2 :])  # the first step, as a "same" line
        elif key == "same" and inside:
            steps.append(value)
    return steps


def test_one_worker_is_the_dialplan_as_it_always_was(pjsip):
    assert "centralita-worker" not in pjsip["extensions.conf"]


@pytest.mark.parametrize(("cores", "bridge_workers", "apps"), [(4, None, 3), (2, None, 1), (4, 2, 2)])
def test_the_dialplan_has_as_many_workers_as_the_bridge_by_default(tmp_path, cores, bridge_workers, apps):
    # Without bridge_workers in the inventory both roles compute one per core but one (the processor_vcpus fact).
    extra = {"ansible_facts": {"processor_vcpus": cores}}
    if bridge_workers is not None:
        extra["bridge_workers"] = bridge_workers
    text = render(tmp_path, "pjsip", **extra)["extensions.conf"]
    found = set(re.findall(r"Stasis\((centralita(?:-\d+)?),inbound", text))
    assert found == {"centralita", *(f"centralita-{k}" for k in range(2, apps + 1))}, found


def test_each_worker_has_its_stasis_app_and_none_other(three_workers):
    text = three_workers["extensions.conf"]
    for context, arguments in (("from-voip", "inbound,${CENTRALITA_DID}"), ("centralita-outbound-amd", "outbound,")):
        apps = re.findall(r"\),Stasis\(([^,]+),([^,)]+,?)", "\n".join(worker_steps(three_workers, context)))
        assert [app for app, _ in apps] == ["centralita", "centralita-2", "centralita-3"], context
        assert all(rest.startswith(arguments.split(",")[0]) for _, rest in apps), context
    assert "Stasis(centralita,inbound,${CENTRALITA_DID})" in text  # worker 1 answers to the app's own name


@pytest.mark.parametrize(
    ("counts", "registered", "tried", "outcome"),
    [
        # The least busy worker first; ties go to the lowest number.
        ({1: 4, 2: 1, 3: 2}, {"centralita", "centralita-2", "centralita-3"}, ["centralita-2"], "done"),
        ({1: 0, 2: 0, 3: 0}, {"centralita", "centralita-2", "centralita-3"}, ["centralita"], "done"),
        ({1: 3, 2: 3, 3: 1}, {"centralita", "centralita-2", "centralita-3"}, ["centralita-3"], "done"),
        # Its app not registered (the worker is dead or restarting): the next one round the ring.
        ({1: 0, 2: 5, 3: 1}, {"centralita-2"}, ["centralita", "centralita-2"], "done"),
        ({1: 2, 2: 2, 3: 0}, {"centralita-2"}, ["centralita-3", "centralita", "centralita-2"], "done"),
        # None takes it: the failover context, each worker tried once.
        ({}, set(), ["centralita", "centralita-2", "centralita-3"], "centralita-unavailable,s,1"),
    ],
)
def test_a_caller_goes_to_the_least_busy_worker_then_the_next_then_the_failover(
    three_workers, counts, registered, tried, outcome
):
    steps = worker_steps(three_workers, "from-voip")
    start = next(step for step in steps if step.startswith("n(not_recorded),"))
    assert walk(steps, start, registered, counts) == (tried, outcome)


def test_the_dialers_answered_call_is_spread_the_same_way_and_hung_up_when_no_worker_takes_it(three_workers):
    steps = worker_steps(three_workers, "centralita-outbound-amd")
    start = next(step for step in steps if step.startswith("n(not_recorded),"))
    assert walk(steps, start, {"centralita-3"}, {1: 1, 2: 0, 3: 2}) == (["centralita-2", "centralita-3"], "done")
    assert walk(steps, start, set(), {}) == (["centralita", "centralita-2", "centralita-3"], "done")  # Hangup()


def test_leaving_the_assistant_frees_the_workers_place(three_workers):
    conf = parse_asterisk_conf(three_workers["extensions.conf"])
    for context in ("[centralita-unavailable]", "[centralita-operator]"):
        assert "n,Set(GROUP(centralita-worker)=)" in values(section(conf, context), "same"), context


def test_the_workers_spread_uses_only_what_a_source_build_has(three_workers):
    used = set(re.findall(r"\b([A-Z][A-Za-z_]*)\(", three_workers["extensions.conf"])) - CORE
    assert used <= DIALPLAN_MODULES.keys()
    assert not {"Gosub", "ExecIf", "While", "Macro"} & used
