package report_test

import (
	"fmt"
	"os"
	"time"

	"github.com/arbiter-dev/arbiter/report"
)

func ExampleCompute() {
	arms := []report.Arm{
		{Name: "champion", Role: report.RoleChampion, Customers: 2000, Decisions: 6100,
			Messages: 2500, Retries: 3600, Recovered: 460, OptedOut: 20, Complained: 4,
			TimeToPay: []time.Duration{26 * time.Hour, 30 * time.Hour, 50 * time.Hour}},
		{Name: "challenger-fast", Role: report.RoleChallenger, Customers: 2000, Decisions: 6500,
			Messages: 2900, Retries: 3600, Recovered: 540, OptedOut: 26, Complained: 5,
			TimeToPay: []time.Duration{20 * time.Hour, 22 * time.Hour}},
		{Name: "holdout", Role: report.RoleHoldout, Customers: 2000, Decisions: 2000,
			Retries: 2000, Recovered: 400, OptedOut: 18, Complained: 2,
			TimeToPay: []time.Duration{72 * time.Hour}},
	}
	r, err := report.Compute("dunning-2025-06", arms, 0.95)
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := r.WriteText(os.Stdout); err != nil {
		fmt.Println(err)
	}
	// Output:
	// experiment dunning-2025-06
	//
	// ARM              ROLE        CUSTOMERS  DECISIONS  RECOVERY              MEDIAN TIME TO PAY  MESSAGES/RECOVERY  OPT-OUT            COMPLAINTS
	// champion         champion    2000       6100       23.0% [21.2%, 24.9%]  1d6h                5.43               1.0% [0.6%, 1.5%]  0.2% [0.1%, 0.5%]
	// challenger-fast  challenger  2000       6500       27.0% [25.1%, 29.0%]  21h0m               5.37               1.3% [0.9%, 1.9%]  0.2% [0.1%, 0.6%]
	// holdout          holdout     2000       2000       20.0% [18.3%, 21.8%]  3d0h                0.00               0.9% [0.6%, 1.4%]  0.1% [0.0%, 0.4%]
	//
	// champion vs holdout: recovery +3.0 pts [0.5, 5.5], z=2.31, p=0.021, significant
	// champion vs holdout: opt-out +0.1 pts [-0.5, 0.7], z=0.33, p=0.744, not significant
	// challenger-fast vs holdout: recovery +7.0 pts [4.4, 9.6], z=5.22, p<0.001, significant
	// challenger-fast vs champion: recovery +4.0 pts [1.3, 6.7], z=2.92, p=0.003, significant
	// challenger-fast vs holdout: opt-out +0.4 pts [-0.3, 1.1], z=1.21, p=0.225, not significant
	// two-sided two-proportion z-test (pooled), Newcombe hybrid score interval for the difference, 95% confidence
}

func ExampleWilson() {
	i := report.Wilson(81, 263, 0.95)
	fmt.Printf("%.4f [%.4f, %.4f]\n", i.Estimate, i.Low, i.High)
	// Output: 0.3080 [0.2553, 0.3662]
}

func ExampleNewcombe() {
	d := report.Newcombe(56, 70, 48, 80, 0.95)
	z, p := report.TwoProportionZ(56, 70, 48, 80)
	fmt.Printf("diff %.4f [%.4f, %.4f], z=%.2f, p=%.4f\n", d.Estimate, d.Low, d.High, z, p)
	// Output: diff 0.2000 [0.0524, 0.3339], z=2.65, p=0.0080
}
