"""The only package that imports aiobotocore/botocore: AWS adapters of the domain ports.

``gameliftstreams`` implements ``StreamGroupReader`` / ``StreamGroupWriter`` over HTTP (AWS,
or the local emulator via ``endpoint_url``). The rate limiter it uses lives in
``autoscaler.limiter`` because it needs no SDK.
"""

from __future__ import annotations

from autoscaler.aws.gameliftstreams import (
    AwsGameLiftStreamsReader,
    AwsGameLiftStreamsWriter,
    GameLiftStreams,
    open_gameliftstreams,
)

__all__ = [
    "AwsGameLiftStreamsReader",
    "AwsGameLiftStreamsWriter",
    "GameLiftStreams",
    "open_gameliftstreams",
]
