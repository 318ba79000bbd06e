"""The order book: snapshots, signed deltas, empty sides, implied asks."""

from decimal import Decimal as D

from markets.book import OrderBook


def test_snapshot_then_signed_deltas():
    book = OrderBook.from_levels([["0.0800", "300.00"], ["0.2200", "333.00"]], [["0.5400", "20.00"]])
    book.apply_delta("yes", D("0.2200"), D("-33.00"))
    book.apply_delta("no", D("0.5600"), D("146.00"))
    assert book.yes == {D("0.0800"): D("300.00"), D("0.2200"): D("300.00")}
    assert book.no == {D("0.5400"): D("20.00"), D("0.5600"): D("146.00")}


def test_a_level_that_nets_to_zero_disappears():
    book = OrderBook.from_levels([["0.1000", "5.00"]], [])
    book.apply_delta("yes", D("0.1000"), D("-5.00"))
    assert book.yes == {}
    assert book.negative_levels == 0


def test_a_level_driven_below_zero_is_removed_and_counted():
    book = OrderBook()
    book.apply_delta("no", D("0.3000"), D("-1.00"))
    assert book.no == {}
    assert book.negative_levels == 1


def test_fractional_sizes_stay_exact():
    book = OrderBook()
    for _ in range(3):
        book.apply_delta("yes", D("0.5000"), D("0.10"))
    assert book.yes[D("0.5000")] == D("0.30")  # 0.1 + 0.1 + 0.1 in float is not 0.3


def test_missing_sides_are_empty_and_give_no_quotes():
    book = OrderBook.from_levels(None, None)
    assert book.best_bid("yes") is None and book.best_ask("yes") is None
    assert book.snapshot_levels() == ([], [])


def test_implied_asks_come_from_the_other_side():
    book = OrderBook.from_levels([["0.4100", "10.00"]], [["0.5600", "17.00"], ["0.4500", "3.00"]])
    assert book.best_bid("yes") == (D("0.4100"), D("10.00"))
    assert book.best_ask("yes") == (D("0.4400"), D("17.00"))
    assert book.best_ask("no") == (D("0.5900"), D("10.00"))


def test_levels_are_best_first_and_snapshots_ascending():
    book = OrderBook.from_levels([["0.2200", "1.00"], ["0.0800", "2.00"], ["0.3000", "3.00"]], [])
    assert [p for p, _ in book.levels("yes", depth=2)] == [D("0.3000"), D("0.2200")]
    yes, no = book.snapshot_levels()
    assert yes == [["0.0800", "2.00"], ["0.2200", "1.00"], ["0.3000", "3.00"]]
    assert no == []


def test_numbers_may_arrive_as_json_numbers():
    book = OrderBook.from_levels([[0.08, 300]], [])
    assert book.yes == {D("0.0800"): D("300.00")}
