"""Actuation: one UpdateStreamGroup per group, the right fields, dry-run, fencing, errors."""

from __future__ import annotations

from collections.abc import Mapping

from autoscaler.actuate import Actuator, landed, waiting_removal
from autoscaler.domain.clock import ManualClock
from autoscaler.domain.errors import (
    ConflictError,
    QuotaExceededError,
    ServiceUnavailableError,
    ThrottledError,
    ValidationError,
)
from autoscaler.domain.models import (
    Actuation,
    CapacityModel,
    CapacitySetting,
    GroupDecision,
    GroupState,
    LocationChange,
    LocationDecision,
)
from autoscaler.testing import FakeGameLiftStreams

NOW = 1_767_225_600.0
OLD = CapacitySetting(always_on=2, target_idle=2, maximum=10)
NEW = CapacitySetting(always_on=4, target_idle=2, maximum=12)


def loc(name: str, current: CapacitySetting, decided: CapacitySetting) -> LocationDecision:
    return LocationDecision(
        location=name, current=current, proposed=decided, decided=decided, in_use=1, reason="t"
    )


def decision(
    *locations: LocationDecision,
    changes: tuple[LocationChange, ...] = (),
    model: CapacityModel = CapacityModel.CURRENT,
    frozen: bool = False,
) -> GroupDecision:
    return GroupDecision(
        group_id="sg-1",
        at=NOW,
        capacity_model=model,
        locations=locations,
        location_changes=changes,
        frozen=frozen,
    )


def fake_group(**settings: CapacitySetting) -> FakeGameLiftStreams:
    fake = FakeGameLiftStreams()
    fake.add_group("sg-1", {k.replace("_", "-"): v for k, v in settings.items()})
    return fake


async def test_every_changed_location_goes_in_one_update_with_the_full_triple() -> None:
    fake = fake_group(us_east_1=OLD, eu_central_1=OLD, us_west_2=OLD)
    eu_new = CapacitySetting(always_on=0, target_idle=4, maximum=8)
    d = decision(
        loc("us-east-1", OLD, NEW), loc("eu-central-1", OLD, eu_new), loc("us-west-2", OLD, OLD)
    )
    act = await Actuator(fake, clock=ManualClock(NOW)).apply(d, dry_run=False)
    assert act.applied
    assert (act.dry_run, act.error, act.retry_later) == (False, None, False)
    assert act.calls == ("UpdateStreamGroup",)
    assert fake.calls == {"UpdateStreamGroup": 1}
    assert fake.writes == [
        ("UpdateStreamGroup", "sg-1", {"us-east-1": NEW, "eu-central-1": eu_new}),
    ]
    assert fake.state("sg-1").location("us-east-1").setting == NEW  # type: ignore[union-attr]


async def test_legacy_pair_is_passed_through() -> None:
    old = CapacitySetting(always_on=2, on_demand=4)
    new = CapacitySetting(always_on=2, on_demand=8)
    fake = fake_group(us_east_1=old)
    act = await Actuator(fake).apply(
        decision(loc("us-east-1", old, new), model=CapacityModel.LEGACY), dry_run=False
    )
    assert act.applied
    (_, _, sent) = fake.writes[0]
    assert sent == {"us-east-1": new}
    assert new.model is CapacityModel.LEGACY


async def test_dry_run_and_no_writer_send_nothing_but_report_the_calls() -> None:
    fake = fake_group(us_east_1=OLD)
    changes = (LocationChange("ap-northeast-1", "add", OLD, "spill-over"),)
    d = decision(loc("us-east-1", OLD, NEW), changes=changes)
    for actuator, dry_run in ((Actuator(fake), True), (Actuator(None), False)):
        act = await actuator.apply(d, dry_run=dry_run)
        assert (act.applied, act.dry_run) == (False, True)
        assert act.calls == ("UpdateStreamGroup", "AddStreamGroupLocations")
    assert fake.calls == {}


async def test_nothing_changed_means_no_call() -> None:
    fake = fake_group(us_east_1=OLD)
    act = await Actuator(fake).apply(decision(loc("us-east-1", OLD, OLD)), dry_run=False)
    assert (act.applied, act.calls, act.error) == (False, (), None)
    frozen = decision(loc("us-east-1", OLD, NEW), frozen=True)
    act = await Actuator(fake).apply(frozen, dry_run=False)
    assert (act.applied, act.calls) == (False, ())
    assert fake.calls == {}


async def test_add_and_remove_locations_in_order() -> None:
    fake = fake_group(us_east_1=OLD, eu_central_1=OLD)
    changes = (
        LocationChange("eu-central-1", "remove", None, "no demand"),
        LocationChange("ap-northeast-1", "add", OLD, "demand"),
    )
    d = decision(loc("us-east-1", OLD, NEW), loc("eu-central-1", OLD, NEW), changes=changes)
    act = await Actuator(fake).apply(d, dry_run=True)
    # An accepted add puts the group in UPDATING_LOCATIONS, which refuses the removal: it
    # waits for a later tick, and a dry run says so.
    assert act.calls == ("UpdateStreamGroup", "AddStreamGroupLocations")
    act = await Actuator(fake).apply(d, dry_run=False)
    assert act.error is None
    assert act.calls == act.succeeded == ("UpdateStreamGroup", "AddStreamGroupLocations")
    assert waiting_removal(d, act)
    # the location being removed is not resized first
    assert fake.writes[0] == ("UpdateStreamGroup", "sg-1", {"us-east-1": NEW})
    assert fake.writes[1] == ("AddStreamGroupLocations", "sg-1", {"ap-northeast-1": OLD})
    assert fake.calls["RemoveStreamGroupLocations"] == 0


async def test_an_add_refused_does_not_keep_an_idle_location_billed() -> None:
    # A quota refuses the add on every tick: the removal goes ahead anyway.
    fake = fake_group(us_east_1=OLD, eu_central_1=OLD)
    fake.fail_next("AddStreamGroupLocations", QuotaExceededError("GPU quota"))
    changes = (
        LocationChange("eu-central-1", "remove", None, "no demand"),
        LocationChange("ap-northeast-1", "add", OLD, "demand"),
    )
    d = decision(loc("us-east-1", OLD, NEW), changes=changes)
    act = await Actuator(fake).apply(d, dry_run=False)
    assert act.calls == (
        "UpdateStreamGroup",
        "AddStreamGroupLocations",
        "RemoveStreamGroupLocations",
    )
    assert act.succeeded == ("UpdateStreamGroup", "RemoveStreamGroupLocations")
    assert act.error is not None
    assert "ServiceQuotaExceededException" in act.error
    assert fake.writes[-1] == ("RemoveStreamGroupLocations", "sg-1", ["eu-central-1"])
    assert not waiting_removal(d, act)


async def test_a_frozen_group_sends_its_way_out_removal_and_nothing_else() -> None:
    # ACTIVE_WITH_ERRORS freezes capacity, but removing the failed location is the way out
    # the guards let through; frozen, nothing else is sent, even if it were in the decision.
    fake = fake_group(us_east_1=OLD, eu_central_1=OLD)
    changes = (
        LocationChange("eu-central-1", "remove", None, "location in ERROR"),
        LocationChange("ap-northeast-1", "add", OLD, "demand"),
    )
    d = decision(loc("us-east-1", OLD, NEW), changes=changes, frozen=True)
    act = await Actuator(fake).apply(d, dry_run=True)
    assert act.calls == ("RemoveStreamGroupLocations",)
    act = await Actuator(fake).apply(d, dry_run=False)
    assert (act.applied, act.error) == (True, None)
    assert act.calls == act.succeeded == ("RemoveStreamGroupLocations",)
    assert fake.writes == [("RemoveStreamGroupLocations", "sg-1", ["eu-central-1"])]


def test_landed_keeps_only_what_the_service_accepted() -> None:
    d = decision(loc("us-east-1", OLD, NEW), loc("eu-central-1", OLD, OLD))
    failed = Actuation("sg-1", applied=True, dry_run=False, succeeded=("AddStreamGroupLocations",))
    assert [x.location for x in landed(d, failed).locations] == ["eu-central-1"]
    ok = Actuation("sg-1", applied=True, dry_run=False, succeeded=("UpdateStreamGroup",))
    assert landed(d, ok) is d


async def test_throttled_update_is_retryable_and_blocks_the_removal() -> None:
    fake = fake_group(us_east_1=OLD, eu_central_1=OLD)
    fake.fail_next("UpdateStreamGroup", ThrottledError("Rate exceeded"))
    changes = (LocationChange("eu-central-1", "remove", None, "no demand"),)
    act = await Actuator(fake).apply(
        decision(loc("us-east-1", OLD, NEW), changes=changes), dry_run=False
    )
    assert (act.applied, act.retry_later) == (False, True)
    assert act.calls == ("UpdateStreamGroup",)
    assert act.error is not None
    assert "ThrottlingException: Rate exceeded" in act.error
    assert "RemoveStreamGroupLocations skipped" in act.error
    assert fake.calls["RemoveStreamGroupLocations"] == 0


async def test_quota_error_on_add_does_not_block_the_update() -> None:
    fake = fake_group(us_east_1=OLD)
    fake.fail_next("AddStreamGroupLocations", QuotaExceededError("GPU quota"))
    changes = (LocationChange("ap-northeast-1", "add", OLD, "demand"),)
    act = await Actuator(fake).apply(
        decision(loc("us-east-1", OLD, NEW), changes=changes), dry_run=False
    )
    assert act.applied  # the update went through
    assert act.retry_later is False
    assert act.error == (
        "AddStreamGroupLocations ap-northeast-1: ServiceQuotaExceededException: GPU quota"
    )


async def test_error_mapping() -> None:
    cases = [
        (ConflictError("busy"), True),
        (ServiceUnavailableError("timeout"), True),
        (ValidationError("bad"), False),
        (QuotaExceededError("quota"), False),
    ]
    for error, retry in cases:
        fake = fake_group(us_east_1=OLD)
        fake.fail_next("UpdateStreamGroup", error)
        act = await Actuator(fake).apply(decision(loc("us-east-1", OLD, NEW)), dry_run=False)
        assert (act.applied, act.retry_later) == (False, retry), error
        assert act.error == f"UpdateStreamGroup us-east-1: {error}"


async def test_group_not_active_is_a_retryable_conflict() -> None:
    fake = fake_group(us_east_1=OLD)
    fake.set_group_status("sg-1", "UPDATING_LOCATIONS")
    act = await Actuator(fake).apply(decision(loc("us-east-1", OLD, NEW)), dry_run=False)
    assert act.retry_later
    assert act.error is not None
    assert "ConflictException" in act.error


async def test_lost_leadership_refuses_to_write() -> None:
    fake = fake_group(us_east_1=OLD)
    changes = (LocationChange("ap-northeast-1", "add", OLD, "demand"),)
    act = await Actuator(fake).apply(
        decision(loc("us-east-1", OLD, NEW), changes=changes), dry_run=False, fencing=lambda: False
    )
    assert (act.applied, act.error, act.retry_later, act.calls) == (False, "not leader", False, ())
    assert fake.calls == {}


async def test_leadership_lost_between_writes_stops_the_rest() -> None:
    fake = fake_group(us_east_1=OLD)
    answers = iter([True, False])
    changes = (LocationChange("ap-northeast-1", "add", OLD, "demand"),)
    act = await Actuator(fake).apply(
        decision(loc("us-east-1", OLD, NEW), changes=changes),
        dry_run=False,
        fencing=lambda: next(answers),
    )
    assert act.applied
    assert act.calls == ("UpdateStreamGroup",)
    assert act.error == "not leader"


async def test_invalid_settings_are_refused_without_a_call() -> None:
    fake = fake_group(us_east_1=OLD)
    bad = CapacitySetting(always_on=12, target_idle=2, maximum=10)
    act = await Actuator(fake).apply(decision(loc("us-east-1", OLD, bad)), dry_run=False)
    assert act.error is not None
    assert act.error.startswith("refused: us-east-1: always-on and target-idle")
    assert act.retry_later is False
    assert fake.calls == {}
    no_setting = (LocationChange("ap-northeast-1", "add", None, "x"),)
    act = await Actuator(fake).apply(decision(changes=no_setting), dry_run=True)
    assert act.error == "refused: ap-northeast-1: add without a capacity setting"


async def test_unexpected_adapter_exception_is_reported_not_raised() -> None:
    class Broken(FakeGameLiftStreams):
        async def update_stream_group(
            self, group_id: str, settings: Mapping[str, CapacitySetting]
        ) -> GroupState:
            raise RuntimeError("boom")

    fake = Broken()
    fake.add_group("sg-1", {"us-east-1": OLD})
    act = await Actuator(fake).apply(decision(loc("us-east-1", OLD, NEW)), dry_run=False)
    assert act.error == "UpdateStreamGroup us-east-1: unexpected RuntimeError: boom"
    assert (act.applied, act.retry_later) == (False, False)


async def test_nothing_to_send_reports_dry_run_exactly_as_with_changes() -> None:
    # No change at all: dry-run (or no writer) says dry_run=True, a live run False, no calls.
    fake = fake_group(us_east_1=OLD)
    same = decision(loc("us-east-1", OLD, OLD))
    for actuator, dry_run, want in (
        (Actuator(fake), True, True),
        (Actuator(None), False, True),
        (Actuator(fake), False, False),
    ):
        act = await actuator.apply(same, dry_run=dry_run)
        assert act == Actuation(group_id="sg-1", applied=False, dry_run=want)
    assert fake.calls == {}
