package calendar

// The holiday data: full-day closures on weekdays. Keep each list to whole years, extend it
// when the exchange publishes the next year's dates, and update the years given to
// newCalendar; a date outside them is refused rather than guessed. holidays_test.go checks the
// regular holidays against github.com/rickar/cal's rules.

// xnys is the New York Stock Exchange. Source: NYSE, "Holidays & Trading Hours"
// (https://www.nyse.com/markets/hours-calendars), including the closure for the national day of
// mourning for President Carter (2025-01-09). When New Year's Day falls on a Saturday the NYSE
// does not close on the Friday before (2021-12-31 was open).
var xnys = newCalendar("XNYS", "NYSE holidays and trading hours, nyse.com/markets/hours-calendars", 2020, 2027, `
2020-01-01 New Year's Day
2020-01-20 Martin Luther King, Jr. Day
2020-02-17 Washington's Birthday
2020-04-10 Good Friday
2020-05-25 Memorial Day
2020-07-03 Independence Day (observed)
2020-09-07 Labor Day
2020-11-26 Thanksgiving Day
2020-12-25 Christmas Day
2021-01-01 New Year's Day
2021-01-18 Martin Luther King, Jr. Day
2021-02-15 Washington's Birthday
2021-04-02 Good Friday
2021-05-31 Memorial Day
2021-07-05 Independence Day (observed)
2021-09-06 Labor Day
2021-11-25 Thanksgiving Day
2021-12-24 Christmas Day (observed)
2022-01-17 Martin Luther King, Jr. Day
2022-02-21 Washington's Birthday
2022-04-15 Good Friday
2022-05-30 Memorial Day
2022-06-20 Juneteenth National Independence Day (observed)
2022-07-04 Independence Day
2022-09-05 Labor Day
2022-11-24 Thanksgiving Day
2022-12-26 Christmas Day (observed)
2023-01-02 New Year's Day (observed)
2023-01-16 Martin Luther King, Jr. Day
2023-02-20 Washington's Birthday
2023-04-07 Good Friday
2023-05-29 Memorial Day
2023-06-19 Juneteenth National Independence Day
2023-07-04 Independence Day
2023-09-04 Labor Day
2023-11-23 Thanksgiving Day
2023-12-25 Christmas Day
2024-01-01 New Year's Day
2024-01-15 Martin Luther King, Jr. Day
2024-02-19 Washington's Birthday
2024-03-29 Good Friday
2024-05-27 Memorial Day
2024-06-19 Juneteenth National Independence Day
2024-07-04 Independence Day
2024-09-02 Labor Day
2024-11-28 Thanksgiving Day
2024-12-25 Christmas Day
2025-01-01 New Year's Day
2025-01-09 National Day of Mourning for President Carter
2025-01-20 Martin Luther King, Jr. Day
2025-02-17 Washington's Birthday
2025-04-18 Good Friday
2025-05-26 Memorial Day
2025-06-19 Juneteenth National Independence Day
2025-07-04 Independence Day
2025-09-01 Labor Day
2025-11-27 Thanksgiving Day
2025-12-25 Christmas Day
2026-01-01 New Year's Day
2026-01-19 Martin Luther King, Jr. Day
2026-02-16 Washington's Birthday
2026-04-03 Good Friday
2026-05-25 Memorial Day
2026-06-19 Juneteenth National Independence Day
2026-07-03 Independence Day (observed)
2026-09-07 Labor Day
2026-11-26 Thanksgiving Day
2026-12-25 Christmas Day
2027-01-01 New Year's Day
2027-01-18 Martin Luther King, Jr. Day
2027-02-15 Washington's Birthday
2027-03-26 Good Friday
2027-05-31 Memorial Day
2027-06-18 Juneteenth National Independence Day (observed)
2027-07-05 Independence Day (observed)
2027-09-06 Labor Day
2027-11-25 Thanksgiving Day
2027-12-24 Christmas Day (observed)
`)

// xlon is the London Stock Exchange: the bank holidays of England and Wales, on which it does
// not trade. Sources: London Stock Exchange, "Business days" (https://www.londonstockexchange.com/
// equities-trading/business-days) and GOV.UK, "UK bank holidays" (https://www.gov.uk/bank-holidays),
// including the special ones (2020's VE Day, 2022's Platinum Jubilee and State Funeral, 2023's
// Coronation).
var xlon = newCalendar("XLON", "LSE business days, londonstockexchange.com; GOV.UK bank holidays, gov.uk/bank-holidays", 2020, 2027, `
2020-01-01 New Year's Day
2020-04-10 Good Friday
2020-04-13 Easter Monday
2020-05-08 Early May bank holiday (VE Day)
2020-05-25 Spring bank holiday
2020-08-31 Summer bank holiday
2020-12-25 Christmas Day
2020-12-28 Boxing Day (substitute day)
2021-01-01 New Year's Day
2021-04-02 Good Friday
2021-04-05 Easter Monday
2021-05-03 Early May bank holiday
2021-05-31 Spring bank holiday
2021-08-30 Summer bank holiday
2021-12-27 Christmas Day (substitute day)
2021-12-28 Boxing Day (substitute day)
2022-01-03 New Year's Day (substitute day)
2022-04-15 Good Friday
2022-04-18 Easter Monday
2022-05-02 Early May bank holiday
2022-06-02 Spring bank holiday
2022-06-03 Platinum Jubilee bank holiday
2022-08-29 Summer bank holiday
2022-09-19 State Funeral of Queen Elizabeth II
2022-12-26 Boxing Day
2022-12-27 Christmas Day (substitute day)
2023-01-02 New Year's Day (substitute day)
2023-04-07 Good Friday
2023-04-10 Easter Monday
2023-05-01 Early May bank holiday
2023-05-08 Bank holiday for the coronation of King Charles III
2023-05-29 Spring bank holiday
2023-08-28 Summer bank holiday
2023-12-25 Christmas Day
2023-12-26 Boxing Day
2024-01-01 New Year's Day
2024-03-29 Good Friday
2024-04-01 Easter Monday
2024-05-06 Early May bank holiday
2024-05-27 Spring bank holiday
2024-08-26 Summer bank holiday
2024-12-25 Christmas Day
2024-12-26 Boxing Day
2025-01-01 New Year's Day
2025-04-18 Good Friday
2025-04-21 Easter Monday
2025-05-05 Early May bank holiday
2025-05-26 Spring bank holiday
2025-08-25 Summer bank holiday
2025-12-25 Christmas Day
2025-12-26 Boxing Day
2026-01-01 New Year's Day
2026-04-03 Good Friday
2026-04-06 Easter Monday
2026-05-04 Early May bank holiday
2026-05-25 Spring bank holiday
2026-08-31 Summer bank holiday
2026-12-25 Christmas Day
2026-12-28 Boxing Day (substitute day)
2027-01-01 New Year's Day
2027-03-26 Good Friday
2027-03-29 Easter Monday
2027-05-03 Early May bank holiday
2027-05-31 Spring bank holiday
2027-08-30 Summer bank holiday
2027-12-27 Christmas Day (substitute day)
2027-12-28 Boxing Day (substitute day)
`)
