"""The only package that imports aiobotocore/botocore: AWS adapters of the domain ports.

``gameliftstreams`` implements ``StreamGroupReader`` / ``StreamGroupWriter`` over HTTP (AWS,
or the local emulator via ``endpoint_url``). The rate limiter it uses lives in
``autoscaler.limiter`` because it needs no SDK.
"""

from __future__ import annotations

import botocore.session
from botocore.exceptions import ProfileNotFound

from autoscaler.aws.gameliftstreams import (
    AwsGameLiftStreamsReader,
    AwsGameLiftStreamsWriter,
    GameLiftStreams,
    open_gameliftstreams,
)
from autoscaler.domain.errors import ConfigError

__all__ = [
    "AwsGameLiftStreamsReader",
    "AwsGameLiftStreamsWriter",
    "GameLiftStreams",
    "check_profile",
    "open_gameliftstreams",
]


def check_profile(profile: str | None) -> None:
    """ConfigError unless ``profile`` (the settings' ``aws_profile``) is None or a profile of
    the AWS config or credentials files. Checked before any client is opened: botocore would
    raise ``ProfileNotFound`` from deep inside the first call instead."""
    if profile is None:
        return
    try:
        botocore.session.Session(profile=profile).get_scoped_config()
    except ProfileNotFound:
        raise ConfigError(
            "aws_profile (AWS_PROFILE or AUTOSCALER_AWS_PROFILE)",
            [
                f"the AWS profile {profile!r} is in neither the AWS config file nor the "
                "credentials file (AWS_CONFIG_FILE, AWS_SHARED_CREDENTIALS_FILE); name one "
                "that is, or unset it for the default credential chain (environment, "
                "container or instance role)"
            ],
        ) from None
