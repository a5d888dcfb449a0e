"""The ML Test Score table: 28 tests, points per state, the worst evidence decides, the weakest section scores."""

from ml_platform.lib.readiness import SECTIONS, TESTS, Evidence, meaning, readiness_table


def all_evidence(state: str) -> dict:
    return {key: Evidence(state, "note") for test in TESTS for key in test.evidence}


def test_the_rubric_has_seven_tests_per_section():
    assert [sum(t.section == s for t in TESTS) for s in SECTIONS] == [7, 7, 7, 7]


def test_everything_present_and_passing_scores_what_the_platform_covers():
    table = readiness_table(all_evidence("pass"))
    covered = {s: sum(1 for t in TESTS if t.section == s and t.evidence) for s in SECTIONS}
    assert table["sections"] == {s: float(n) for s, n in covered.items()}
    assert table["overall"] == min(covered.values())
    absent = [r["test"] for r in table["rows"] if r["state"] == "absent"]
    assert "All hyperparameters have been tuned" in absent and "Training is reproducible" not in absent


def test_failing_or_not_yet_exercised_tests_earn_half_and_absent_ones_nothing():
    evidence = all_evidence("pass")
    evidence["infrastructure.reproduce"] = Evidence("fail", "no match")
    evidence["live_performance"] = Evidence("not run", "no labels yet")
    evidence["canary"] = Evidence("absent", "off")
    rows = {r["test"]: r for r in readiness_table(evidence)["rows"]}
    assert (rows["Training is reproducible"]["state"], rows["Training is reproducible"]["points"]) == ("fail", 0.5)
    assert rows["Prediction quality has not regressed"]["points"] == 0.5
    assert (rows["Models are canaried before serving"]["state"], rows["Models are canaried before serving"]["points"]) \
        == ("absent", 0.0)


def test_the_worst_present_evidence_decides_and_absent_evidence_is_ignored_beside_present():
    evidence = all_evidence("pass")
    evidence["model.known_hard_cases"] = Evidence("absent", "no file")
    rows = {r["test"]: r for r in readiness_table(evidence)["rows"]}
    assert rows["Model quality is sufficient on important data slices"]["state"] == "pass"
    evidence["model.slices"] = Evidence("fail", "slice b below its floor")
    rows = {r["test"]: r for r in readiness_table(evidence)["rows"]}
    assert rows["Model quality is sufficient on important data slices"]["state"] == "fail"
    evidence["infrastructure.serving"] = Evidence("not run", "x")
    rows = {r["test"]: r for r in readiness_table(evidence)["rows"]}
    assert rows["The ML pipeline is integration tested"]["state"] == "not run"


def test_evidence_that_was_not_collected_counts_as_not_run():
    table = readiness_table({})
    assert {r["state"] for r in table["rows"] if r["how"].startswith("missing")} == {"absent"}
    assert {r["state"] for r in table["rows"] if not r["how"].startswith("missing")} == {"not run"}


def test_the_papers_bands():
    assert meaning(0) == "more of a research project than a productionized system"
    assert meaning(2.0).startswith("a first pass at basic productionization")
    assert meaning(2.5).startswith("reasonably tested")
    assert meaning(6).startswith("exceptional")
