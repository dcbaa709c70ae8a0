//! What the commands share: the Kafka connection flags of the services, and
//! loading the record catalog (each error names the file and what was wrong
//! with it).

use std::fs;
use std::path::Path;

use anyhow::Context as _;
use clap::Args;
use tidemark_schemas::Catalog;

/// A catalog: the built-in v1 one, or one loaded from a file.
pub enum CatalogChoice {
    /// The built-in v1 catalog.
    Builtin,
    /// A catalog loaded from a file.
    Loaded(Box<Catalog>),
}

impl CatalogChoice {
    /// Loads `path`, or picks the built-in catalog when it is `None`.
    ///
    /// # Errors
    /// If the file cannot be read or is not a valid catalog.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let Some(path) = path else { return Ok(CatalogChoice::Builtin) };
        let text = fs::read_to_string(path).with_context(|| format!("reading catalog {}", path.display()))?;
        let catalog = Catalog::from_toml(&text).with_context(|| format!("loading catalog {}", path.display()))?;
        Ok(CatalogChoice::Loaded(Box::new(catalog)))
    }

    /// The catalog.
    pub fn get(&self) -> &Catalog {
        match self {
            CatalogChoice::Builtin => Catalog::builtin(),
            CatalogChoice::Loaded(c) => c,
        }
    }
}

/// The Kafka connection every service takes, flattened into its flags.
#[derive(Debug, Args)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers.
    #[arg(long, env = "TIDEMARK_BROKERS", value_name = "HOST:PORT,...")]
    pub brokers: String,
    /// A librdkafka option passed through, e.g. `security.protocol=SASL_SSL` (repeatable).
    #[arg(long = "kafka-option", value_name = "KEY=VALUE", value_parser = parse_kafka_option)]
    pub kafka_options: Vec<(String, String)>,
    /// Prefix of every topic name (e.g. `staging.`).
    #[arg(long, env = "TIDEMARK_TOPIC_PREFIX", default_value = "")]
    pub topic_prefix: String,
    /// SASL user name (librdkafka's `sasl.username`); from the environment so
    /// credentials never appear in a command line that `ps` shows.
    #[arg(long, env = "TIDEMARK_KAFKA_SASL_USERNAME", hide_env_values = true, value_name = "USER")]
    pub kafka_sasl_username: Option<String>,
    /// SASL password (librdkafka's `sasl.password`); set it through the environment.
    #[arg(long, env = "TIDEMARK_KAFKA_SASL_PASSWORD", hide_env_values = true, value_name = "PASSWORD")]
    pub kafka_sasl_password: Option<Secret>,
}

/// A secret flag value that prints as `<redacted>`, so no `Debug` of the
/// arguments can show it.
#[derive(Clone)]
pub struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

impl KafkaArgs {
    /// The librdkafka options: `--kafka-option`s, then the SASL credentials.
    pub fn options(&self) -> Vec<(String, String)> {
        with_sasl(&self.kafka_options, self.kafka_sasl_username.as_ref(), self.kafka_sasl_password.as_ref())
    }

    /// The connection every Kafka client of the command is built from.
    pub fn connection(&self) -> tidemark_kafka::Connection {
        tidemark_kafka::Connection::new(self.brokers.clone(), self.options())
    }
}

/// `options`, then the SASL credentials given (librdkafka's `sasl.username`
/// and `sasl.password`).
pub fn with_sasl(
    options: &[(String, String)],
    user: Option<&String>,
    password: Option<&Secret>,
) -> Vec<(String, String)> {
    let mut out = options.to_vec();
    if let Some(user) = user {
        out.push(("sasl.username".to_owned(), user.clone()));
    }
    if let Some(Secret(password)) = password {
        out.push(("sasl.password".to_owned(), password.clone()));
    }
    out
}

/// Parses `KEY=VALUE`.
pub fn parse_kafka_option(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
        _ => Err(format!("`{s}` is not KEY=VALUE")),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cmd {
        #[command(flatten)]
        kafka: KafkaArgs,
    }

    #[test]
    fn sasl_credentials_become_options_and_the_password_never_prints() {
        let cmd = Cmd::try_parse_from([
            "t",
            "--brokers",
            "k:9092",
            "--kafka-option",
            "sasl.mechanism=PLAIN",
            "--kafka-sasl-username",
            "svc",
            "--kafka-sasl-password",
            "hunter2-secret",
        ])
        .expect("parses");
        let options = cmd.kafka.options();
        assert!(options.contains(&("sasl.username".to_owned(), "svc".to_owned())));
        assert!(options.contains(&("sasl.password".to_owned(), "hunter2-secret".to_owned())));
        assert!(options.contains(&("sasl.mechanism".to_owned(), "PLAIN".to_owned())));
        let printed = format!("{cmd:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("<redacted>"), "{printed}");
    }
}
