"""The docs derive from the code: the readme's feature table is the schema's own."""
from heart.schema import markdown_table

from conftest import ROOT


def test_readme_feature_table_is_generated_from_the_schema():
    readme = (ROOT / "readme.md").read_text()
    block = readme.split("<!-- schema-table:start -->\n")[1].split("<!-- schema-table:end -->")[0]
    assert block.strip() == markdown_table().strip(), "regenerate the table: see readme.md, 'Features'"


def test_readme_opens_with_the_two_commands():
    readme = (ROOT / "readme.md").read_text()
    head = readme[: readme.index("## Layout")]
    assert "make run" in head and "make test" in head
