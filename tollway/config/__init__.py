"""Configuration: the schema, loading from YAML and the embedded default."""

from tollway.config.defaults import default_settings
from tollway.config.loader import ConfigError, load_settings, validate_settings, with_environment
from tollway.config.schema import EMBEDDED_SIMULATOR, DeploymentConfig, ModelGroupConfig, Settings
from tollway.config.types import Duration, SecretRef, parse_duration

__all__ = [
    "EMBEDDED_SIMULATOR",
    "ConfigError",
    "DeploymentConfig",
    "Duration",
    "ModelGroupConfig",
    "SecretRef",
    "Settings",
    "default_settings",
    "load_settings",
    "parse_duration",
    "validate_settings",
    "with_environment",
]
