use super::*;

const GOOD: &str = r#"
provider_id = "hpc"

[core]
url = "http://127.0.0.1:8888"
public_key_file = "/etc/ucim/ucloud_key.pub"
refresh_token_file = "/etc/ucim/refresh_token"

[server]
listen = "127.0.0.1:8889"

[products.cpu-1]
category = "cpu"
partition = "cpu"
cpus = 1
memory_gb = 1
price = 1

[applications.print-id]
script = "id"

[users.map]
"alice#1234" = "alice"
"#;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("/etc/ucim/config.toml"))
}

#[test]
fn good_config_parses_with_defaults() {
    let c = parse(GOOD).unwrap();
    assert_eq!(c.core.issuer, "cloud.sdu.dk");
    assert_eq!(c.server.first_instance_port, 42000);
    assert_eq!(c.server.min_uid, 1000);
    assert_eq!(c.products["cpu-1"].partition, "cpu");
    assert_eq!(c.users.map["alice#1234"], "alice");
}

#[test]
fn missing_key_names_the_file_and_key() {
    let text = GOOD.replace("partition = \"cpu\"\n", "");
    let e = parse(&text).unwrap_err();
    assert_eq!(e.key, "products.cpu-1");
    assert!(e.problem.contains("partition"), "{e}");
    assert!(e.to_string().starts_with("config /etc/ucim/config.toml: key `products.cpu-1`"), "{e}");
}

#[test]
fn unknown_key_is_an_error() {
    let text = GOOD.replace("cpus = 1", "cpus = 1\ncpu = 2");
    let e = parse(&text).unwrap_err();
    assert!(e.problem.contains("unknown field `cpu`"), "{e}");
    assert!(e.problem.contains("line"), "{e}");
}

#[test]
fn wrong_type_is_an_error() {
    let e = parse(&GOOD.replace("cpus = 1", "cpus = \"one\"")).unwrap_err();
    assert_eq!(e.key, "products.cpu-1.cpus");
}

#[test]
fn semantic_errors_name_the_key() {
    let cases = [
        ("cpus = 1", "cpus = 0", "products.cpu-1.cpus"),
        ("provider_id = \"hpc\"", "provider_id = \"h p c\"", "provider_id"),
        ("url = \"http://127.0.0.1:8888\"", "url = \"ftp://x\"", "core.url"),
        ("listen = \"127.0.0.1:8889\"", "listen = \"127.0.0.1:8889\"\nmin_uid = 0", "server.min_uid"),
        ("listen = \"127.0.0.1:8889\"", "listen = \"127.0.0.1:8889\"\njob_root = \"../x\"", "server.job_root"),
        ("listen = \"127.0.0.1:8889\"", "listen = \"127.0.0.1:8889\"\ninstance_command = \"ucim\"", "server.instance_command"),
        ("\"alice#1234\" = \"alice\"", "\"alice#1234\" = \"Alice; rm\"", "users.map.\"alice#1234\""),
        ("script = \"id\"", "script = \"  \"", "applications.print-id.script"),
    ];
    for (from, to, key) in cases {
        let e = parse(&GOOD.replace(from, to)).unwrap_err();
        assert_eq!(e.key, key, "{e}");
    }
}

#[test]
fn bad_listen_address_is_an_error() {
    let e = parse(&GOOD.replace("127.0.0.1:8889", "nowhere")).unwrap_err();
    assert_eq!(e.key, "server.listen");
}

#[test]
fn unreadable_file_is_an_error() {
    let e = Config::load(Path::new("/nonexistent/ucim.toml")).unwrap_err();
    assert!(e.to_string().contains("/nonexistent/ucim.toml: cannot read"), "{e}");
}

#[test]
fn unix_names() {
    assert!(valid_unix_name("alice"));
    assert!(valid_unix_name("a_b-1"));
    assert!(!valid_unix_name("Alice"));
    assert!(!valid_unix_name("1abc"));
    assert!(!valid_unix_name("-rf"));
    assert!(!valid_unix_name(""));
    assert!(!valid_unix_name("a b"));
}

#[test]
fn user_modes_need_their_settings() {
    let with_users = |users: &str| GOOD.replace("[users.map]", &format!("[users]\n{users}\n\n[users.map]"));
    let c = parse(&with_users("mode = \"many-to-one\"\nshared_user = \"ucloudjobs\"")).unwrap();
    assert_eq!(c.users.mode, UserMode::ManyToOne);
    assert!(c.users.mode.needs_connection() && !c.users.mode.one_to_one());
    assert_eq!(parse(GOOD).unwrap().users.mode, UserMode::Admin, "admin mapping by default");
    let ticket = parse(&with_users("mode = \"ticket\"").replace("listen = \"127.0.0.1:8889\"", "listen = \"127.0.0.1:8889\"\npublic_url = \"https://hpc.example.org\""));
    assert_eq!(ticket.unwrap().users.connection_expiry_ms(), None);
    let cases = [
        (with_users("mode = \"ticket\""), "server.public_url"),
        (with_users("mode = \"hook\""), "users.create_hook"),
        (with_users("mode = \"hook\"\ncreate_hook = [\"create-user\"]"), "users.create_hook"),
        (with_users("mode = \"many-to-one\""), "users.shared_user"),
        (with_users("mode = \"many-to-one\"\nshared_user = \"Root!\""), "users.shared_user"),
        (with_users("mode = \"sideways\""), "users.mode"),
        (with_users("ticket_ttl_secs = 5"), "users.ticket_ttl_secs"),
        (with_users("connection_expiry_hours = 0"), "users.connection_expiry_hours"),
        (with_users("hook_timeout_secs = 0"), "users.hook_timeout_secs"),
        (with_users("group = \"wheel group\""), "users.group"),
        (GOOD.replace("listen = \"127.0.0.1:8889\"", "listen = \"127.0.0.1:8889\"\npublic_url = \"hpc.example.org/\""), "server.public_url"),
        (GOOD.replace("listen = \"127.0.0.1:8889\"", "listen = \"127.0.0.1:8889\"\ninstance_idle_secs = 1"), "server.instance_idle_secs"),
    ];
    for (text, key) in cases {
        let e = parse(&text).unwrap_err();
        assert_eq!(e.key, key, "{e}");
    }
}

#[test]
fn applications_with_templates_modules_and_directives() {
    let text = GOOD.replace(
        "[applications.print-id]\nscript = \"id\"",
        r##"[applications.print-id]
invocation = "python3 {{ script }} --n {{ n }}"
modules = ["python/3.11"]
sbatch = ["#SBATCH --mail-type=END"]
[applications.print-id.environment]
OMP_PROC_BIND = "close""##,
    )
    .replace("price = 1", "price = 1\nqos = \"normal\"\nconstraint = \"intel&ib\"\nsbatch = [\"#SBATCH --exclusive\"]");
    let c = parse(&text).unwrap();
    assert_eq!(c.applications["print-id"].invocation.as_deref(), Some("python3 {{ script }} --n {{ n }}"));
    assert_eq!(c.products["cpu-1"].qos.as_deref(), Some("normal"));
    assert!(!c.slurm.outside_jobs);

    for (from, to, key) in [
        ("sbatch = [\"#SBATCH --exclusive\"]", "sbatch = [\"--exclusive\"]", "products.cpu-1.sbatch"),
        ("sbatch = [\"#SBATCH --exclusive\"]", "sbatch = [\"#SBATCH --exclusive\\nrm -rf ~\"]", "products.cpu-1.sbatch"),
        ("sbatch = [\"#SBATCH --mail-type=END\"]", "sbatch = [\"echo hi\"]", "applications.print-id.sbatch"),
        ("{{ n }}\"", "{{ n \"", "applications.print-id.invocation"),
        ("python/3.11", "python; rm -rf ~", "applications.print-id.modules"),
        ("OMP_PROC_BIND", "UCLOUD_PARAM_x", "applications.print-id.environment"),
        ("qos = \"normal\"", "qos = \"a b\"", "products.cpu-1.qos"),
        ("constraint = \"intel&ib\"", "constraint = \"$(x)\"", "products.cpu-1.constraint"),
        ("invocation = \"python3 {{ script }} --n {{ n }}\"", "", "applications.print-id.script"),
    ] {
        assert!(text.contains(from), "{from}");
        let e = parse(&text.replace(from, to)).unwrap_err();
        assert_eq!(e.key, key, "{to}: {e}");
    }
}

#[test]
fn storage_products_parse_and_validate() {
    let with = |extra: &str| parse(&format!("{GOOD}\n{extra}"));
    let c = with("[storage.home]\nkind = \"home\"\npath = \"/home/{localUser}\"\n[storage.projects]\nkind = \"project\"\npath = \"/work/projects/{project}\"\n").unwrap();
    assert_eq!(c.storage["home"].kind, DriveKind::Home);
    assert_eq!(c.storage["home"].category_name("home"), "home");
    assert_eq!(c.storage["projects"].kind.id_prefix(), "p-");
    let err = |extra: &str| with(extra).unwrap_err();
    assert_eq!(err("[storage.h]\nkind = \"home\"\npath = \"home/{localUser}\"\n").key, "storage.h.path");
    assert_eq!(err("[storage.h]\nkind = \"home\"\npath = \"/home/../{localUser}\"\n").key, "storage.h.path");
    assert_eq!(err("[storage.h]\nkind = \"home\"\npath = \"/home/x{localUser}\"\n").key, "storage.h.path");
    assert_eq!(err("[storage.h]\nkind = \"home\"\npath = \"/home/all\"\n").key, "storage.h.path");
    assert_eq!(err("[storage.p]\nkind = \"project\"\npath = \"/work/{localUser}\"\n").key, "storage.p.path");
    let twice = "[storage.a]\nkind = \"home\"\npath = \"/a/{localUser}\"\n[storage.b]\nkind = \"home\"\npath = \"/b/{localUser}\"\n";
    assert_eq!(err(twice).key, "storage.b.kind");
}

#[test]
fn many_to_one_homes_must_be_per_ucloud_user() {
    let base = GOOD.replace("[users.map]\n\"alice#1234\" = \"alice\"\n", "[users]\nmode = \"many-to-one\"\nshared_user = \"ucimshared\"\n");
    let with = |extra: &str| parse(&format!("{base}\n{extra}"));
    let e = with("[storage.home]\nkind = \"home\"\npath = \"/home/{localUser}\"\n").unwrap_err();
    assert_eq!(e.key, "storage.home.path");
    assert!(e.problem.contains("{ucloudUser}"), "{e}");
    assert!(with("[storage.home]\nkind = \"home\"\npath = \"/home/{localUser}/ucloud/{ucloudUser}\"\n").is_ok());
}
