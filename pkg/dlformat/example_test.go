package dlformat_test

import (
	"fmt"
	"io"
	"strings"

	"github.com/marketpipe/marketpipe/pkg/dlformat"
	"github.com/marketpipe/marketpipe/pkg/obs"
)

func Example() {
	const reply = `START-OF-FILE
RUNDATE=20150605
PROGRAMNAME=gethistory
START-OF-FIELDS
PX_LAST
END-OF-FIELDS
TIMESTARTED=Fri Jun  5 14:29:39 BST 2015
START-OF-DATA
START SECURITY|SPX Index|PX_LAST|
SPX Index|05/01/2015|2108.29|
SPX Index|05/04/2015|N.A.|
SPX Index|05/05/2015|
END SECURITY|SPX Index|PX_LAST|0|
START SECURITY|NOPE Index|PX_LAST|
END SECURITY|NOPE Index|PX_LAST|10|
END-OF-DATA
END-OF-FILE
`
	r, err := dlformat.NewReader(strings.NewReader(reply))
	if err != nil {
		fmt.Println(err)
		return
	}
	r.OnReject = func(rj obs.Reject) error {
		fmt.Printf("reject line %d: %s\n", rj.Line, rj.Reason)
		return nil
	}
	for {
		o, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("%s|%s|%s|%v|%s\n", o.Security, o.Field, o.Date, o.Value(), o.Flag)
	}
	fmt.Println(r.Program(), r.Stats().Rejects, "reject(s)")
	// Output:
	// SPX Index|PX_LAST|2015-05-01|2108.29|
	// SPX Index|PX_LAST|2015-05-04|<nil>|N.A.
	// reject line 12: history row has 2 columns; want 3 (security|date|value) inside the block of SPX Index PX_LAST
	// NOPE Index||2015-06-05|<nil>|RC=10
	// gethistory 1 reject(s)
}
