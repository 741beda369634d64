"""A chart of the post-mortem page by name, title and alt text (no matplotlib here: the page
names its charts without drawing them)."""


class Chart:
    """One chart of the report: its file name, title and what it shows (the image's alt)."""

    def __init__(self, name: str, title: str, alt: str) -> None:
        self.name, self.title, self.alt = name, title, alt

    @property
    def file_name(self) -> str:
        return f"{self.name}.png"
