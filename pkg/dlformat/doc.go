// Package dlformat reads Bloomberg Data License reply files as a stream and turns them into
// normalized observations (pkg/obs). It sits in the transformer stage: the collected reply file
// goes in, one obs.Observation per security, field and date comes out, and every line that cannot
// be turned into observations is reported as an obs.Reject (it lands in the rejects table) while
// reading goes on. Only a file that cannot be read at all (I/O or gzip failure, no data section,
// a truncated data section, an unusable DELIMITER, a line longer or a gzip stream inflating more
// than pkg/bounds allows) ends with an *Error.
//
// The reader holds one line at a time (bufio, reused buffers; a line longer than MaxLineBytes
// ends the file before it is buffered whole), so memory does not grow with the file size. Files are
// gzip-decompressed when their first bytes are the gzip magic, whatever their name.
//
// # Layouts
//
// The data rows are recognised in this order:
//
//  1. "START SECURITY|ID|FIELD|" ... "END SECURITY|ID|FIELD|RC|" blocks: gethistory's default
//     vertical layout, rows "ID|DATE|VALUE|". The return code is on the END line.
//  2. getactions (PROGRAMNAME=getactions): 21 fixed columns, then FIELD|VALUE pairs.
//  3. Rows "ID|RC|NFIELDS|...". With PROGRAMNAME=gethistory or HIST_FORMAT=horizontal they are
//     history rows: "DATE|v1..vN" (horizontal) when they have one column more than the field
//     list, "PRICING_SOURCE|DATE|v1..vN" (REST output) when they have two more. With any other
//     program they are getdata rows "v1..vN". Without PROGRAMNAME (REST fragments) the shape
//     decides: N values, a date and N values, or a source, a date and N values.
//
// A column-header row (COLUMNHEADER=yes: "SECURITIES|ERROR CODE|NUM FLDS|...") is not data; when
// the START-OF-FIELDS list is empty (getsnap) its names become the field names.
//
// # Rules
//
//   - Security: the identifier with trailing spaces trimmed (SECDESLENGTH padding, "IBM US
//     Equity |"); inner spaces are kept.
//   - Date: the row's date for history; for snapshots the file date, RUNDATE or else the date of
//     the first TIMESTARTED (as written, in its own time zone). A row that needs the file date in
//     a file that has neither is rejected. Row dates are read in either form (20240715 or
//     07/15/2024) whatever DATEFORMAT says, since the column is known to hold a date.
//   - Return codes: a security with a non-zero return code gives one observation with an empty
//     field, a null value, flag "RC=<code>" and the file date, also for vertical blocks whose END
//     line carries the code. Consecutive repeats (one per field block) are folded into one.
//   - Markers: N.A., N.S., N.D., FLD UNKNOWN give a null value flagged with the marker; an empty
//     or all-space cell gives a null value flagged BLANK. Trailing spaces are padding: "N.A. " is
//     N.A. and "17:00 " is "17:00".
//   - Numbers: [-]digits[.digits] including ".215" and "105.230000". Not numbers, kept as text:
//     zero-padded integers such as "0000320193" (identifiers; the zeros matter) and integers of
//     more than 15 digits (a float64 would change them). No exponents, no "+", no NaN/Inf.
//   - Dates in cells, in the DATEFORMAT form (yyyymmdd: 20240715; mmddyyyy or absent:
//     07/15/2024; ddmmyyyy: 15/07/2024), become the string "2024-07-15": a date is not a number,
//     and one spelling keeps values comparable across files with different DATEFORMATs. An
//     8-digit cell is a date only with DATEFORMAT=yyyymmdd and only when it is a valid date
//     between 1900 and 2199; otherwise it is a number. Times of day stay text.
//   - Bulk cells (";2;ROWS;COLS;type;value;...;"): a JSON array of rows, each a JSON array;
//     types 2, 3, 12 and 13 become JSON numbers (canonical: "0.5" for ".500"), type 5 dates
//     become "YYYY-MM-DD", everything else a string as written, an empty element null. A bulk
//     cell whose element count disagrees with its declared shape is rejected (with the field
//     named) and the other cells of its row still load.
//   - NFIELDS: the field list is trusted. A row whose NFIELDS disagrees with the list but whose
//     values match the list loads normally and is counted in Stats.NFieldsMismatch (the REST
//     fragments do this); no reject, because no data were lost. A row whose number of values
//     does not match the field list is rejected as a whole: values cannot be paired with fields
//     safely when some are missing or extra.
//   - A history row with a blank date and only blank values is the REST form of "no data for
//     this security": it produces nothing and is not a reject.
//   - getactions rows give, dated by the effective date (else announce date, else file date),
//     "<ACTION>.ACTION_ID" and "<ACTION>.FLAG" (N/U/D) as text and one "<ACTION>.<FIELD>"
//     observation per FIELD|VALUE pair, ACTION being the action mnemonic (e.g. DVD_CASH), so
//     that two kinds of action on one day do not collide. The pricing source of REST history rows
//     is not kept: observations have no place for it.
//
// # Tolerated
//
// Comment lines starting with '#' anywhere, CRLF, a UTF-8 byte-order mark, no final newline,
// text before START-OF-FILE, a file starting at START-OF-FIELDS or START-OF-DATA, blank lines,
// a repeated TIMESTARTED (the first dates the data), a missing TIMEFINISHED or END-OF-FILE,
// unknown header keys. Header lines are split at the first '='. Header lines that are not
// KEY=VALUE, and text after END-OF-FILE, are reported as rejects (never silently dropped).
package dlformat
