package kafkajobs

import (
	"context"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/aws"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// saslMechanism builds the kgo SASL mechanism of s (validated).
func saslMechanism(s *SASL) sasl.Mechanism {
	switch s.Mechanism {
	case SASLScramSHA256, SASLScramSHA512:
		a := scram.Auth{Zid: s.Zid, User: s.Username, Pass: s.Password, IsToken: s.IsToken}
		if s.Nonce != "" {
			a.Nonce = []byte(s.Nonce)
		}
		if s.Mechanism == SASLScramSHA256 {
			return a.AsSha256Mechanism()
		}
		return a.AsSha512Mechanism()
	case SASLAWSMSKIAM:
		static := aws.Auth{AccessKey: s.AccessKey, SecretKey: s.SecretKey, SessionToken: s.SessionToken, UserAgent: s.UserAgent}
		return aws.ManagedStreamingIAM(func(ctx context.Context) (aws.Auth, error) {
			return mskAuth(ctx, static)
		})
	default:
		return plain.Auth{Zid: s.Zid, User: s.Username, Pass: s.Password}.AsMechanism()
	}
}

// mskAuth returns the credentials of the AWS default chain when it has
// some, else static (RoadRunner's order).
func mskAuth(ctx context.Context, static aws.Auth) (aws.Auth, error) {
	cfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err == nil && cfg.Credentials != nil {
		if creds, err := cfg.Credentials.Retrieve(ctx); err == nil {
			return aws.Auth{AccessKey: creds.AccessKeyID, SecretKey: creds.SecretAccessKey,
				SessionToken: creds.SessionToken, UserAgent: static.UserAgent}, nil
		}
	}
	return static, nil
}
