"""Whether a text table's columns line up, for the tests of the tables
ipsentry prints (verify, config check, the TUI's SA monitor)."""


def columns_aligned(lines, titles):
    """None when every row starts each left-aligned column where its title
    starts and ends each right-aligned one (title given as ">name") where
    its title ends; else what is out of line. One character is one column,
    which holds for the text ipsentry writes."""
    head = lines[0]
    for title in titles:
        right = title.startswith(">")
        name = title.lstrip(">")
        at = head.find(name)
        if at < 0:
            return f"no column '{name}' in: {head}"
        for row in lines[1:]:
            if right:
                end = at + len(name)
                if len(row) < end or row[end - 1] == " " or (len(row) > end and row[end] != " "):
                    return f"'{name}' does not end at column {end} in: {row}"
            elif len(row) > at and (row[at] == " " or (at > 0 and row[at - 1] != " ")):
                return f"'{name}' does not start at column {at} in: {row}"
    return None


def table_after(text, heading):
    """The lines of the table that follows the line `heading`, up to a blank line."""
    lines = text.splitlines()
    start = next(i for i, l in enumerate(lines) if l.strip() == heading.strip()) + 1
    end = next((i for i in range(start, len(lines)) if not lines[i].strip()), len(lines))
    return lines[start:end]
