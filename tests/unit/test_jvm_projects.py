"""Our own Maven projects: each is known by name, versioned in headwater/versions.py, and buildable by Maven."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from headwater import jvm, versions

POM = "{http://maven.apache.org/POM/4.0.0}"


@pytest.mark.parametrize("name", sorted(jvm.PROJECTS))
def test_each_project_has_a_pom_named_after_it_and_a_pinned_version(name: str) -> None:
    pom = ET.parse(jvm.PROJECTS[name] / "pom.xml").getroot()
    assert pom.findtext(f"{POM}artifactId") == name
    assert pom.findtext(f"{POM}version") == "${revision}"  # headwater.jvm passes the pinned one
    assert isinstance(getattr(versions, name.upper().replace("-", "_") + "_VERSION"), str)


def test_an_unknown_project_is_refused_with_the_known_ones() -> None:
    with pytest.raises(
        ValueError, match=r"unknown JVM project 'nope'; known projects: contract-check, flink-functions"
    ):
        jvm.build("nope")
