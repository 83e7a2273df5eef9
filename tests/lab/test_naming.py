"""support.lab.naming: tags and connect_args that name a notebook's connections."""

from __future__ import annotations

import os

import pytest

from support.lab.naming import named, notebook_tag


def test_the_tag_carries_the_notebook_and_this_process():
    assert notebook_tag("nb03") == f"nb03-{os.getpid()}"


@pytest.mark.parametrize("bad", ["", "nb 03", "nb%", "a'b"])
def test_a_tag_that_would_break_a_like_pattern_is_refused(bad):
    with pytest.raises(ValueError, match="letters, digits"):
        notebook_tag(bad)


def test_named_merges_server_settings_and_keeps_other_arguments():
    args = named("nb06-1-app", statement_cache_size=0, server_settings={"jit": "off"})
    assert args == {"server_settings": {"application_name": "nb06-1-app", "jit": "off"}, "statement_cache_size": 0}
