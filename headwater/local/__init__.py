"""The platform on this machine: real processes built from the same spec as the Kubernetes stacks.

    kafka = LocalKafka(platform, state_dir, KafkaPorts.from_env()).start()
    report = provision(kafka)                      # topics, credentials, ACLs, client files
    conf = client_config(kafka, "agent-gateway")   # librdkafka settings for one principal
    kafka.stop()

`process` supervises every child (its own process group, log file, readiness probe, clean stop) and
stops them all at exit or on SIGINT/SIGTERM once `install_signal_handlers()` has been called.
"""

from headwater.local.kafka import KafkaPorts, LocalKafka, LocalKafkaError, PortInUseError, default_state_dir
from headwater.local.process import ProcessError, Supervised, install_signal_handlers, stop_all
from headwater.local.provision import (
    ProvisionError,
    ProvisionReport,
    bootstrap_servers,
    client_config,
    java_client_properties,
    properties_file,
    provision,
)

__all__ = [
    "KafkaPorts",
    "LocalKafka",
    "LocalKafkaError",
    "PortInUseError",
    "ProcessError",
    "ProvisionError",
    "ProvisionReport",
    "Supervised",
    "bootstrap_servers",
    "client_config",
    "default_state_dir",
    "install_signal_handlers",
    "java_client_properties",
    "properties_file",
    "provision",
    "stop_all",
]
