package config

import (
	"encoding/json"

	"gopkg.in/yaml.v3"
)

// declareRule handles one Declare key of a driver whose declare name or
// encoding differs from the file's; see declareRuleFor.
type declareRule func(b *declareBuilder, key, value string, m map[string]string)

// declareRuleFor returns the rule for key of driver, or nil when the key
// goes to the driver's config as it is.
func declareRuleFor(driver, key string) declareRule {
	switch driver {
	case DriverAMQP:
		switch key {
		case "exchange_type":
			return amqpExchangeTypeRule
		case "consume_all":
			return ignoreRule("RoadRunner ignores it since 2024.3: every message of the queue is consumed, " +
				"with or without rr_* headers (the job name then comes from job_header or the routing key)")
		}
	case DriverSQS:
		switch key {
		case "wait_time":
			return renameRule("wait_time_seconds")
		case "wait_time_seconds":
			return sqsWaitTimeSecondsRule
		case "attributes":
			return sqsAttributesRule
		}
	case DriverKafka:
		if key == "producer_options" {
			return kafkaProducerRule
		}
	}
	return nil
}

// ignoreRule accepts a key without effect.
func ignoreRule(reason string) declareRule {
	return func(b *declareBuilder, key, _ string, _ map[string]string) { b.ignore(key, reason) }
}

// renameRule passes the value on under the file's key name.
func renameRule(to string) declareRule {
	return func(b *declareBuilder, key, v string, _ map[string]string) {
		if n := b.value(key, v); n != nil {
			setKey(b.cfg, to, n)
		}
	}
}

// sqsWaitTimeSecondsRule takes the SDK 2.x..4.2 name of wait_time; when
// both are sent, wait_time (RoadRunner's declare name) wins.
func sqsWaitTimeSecondsRule(b *declareBuilder, key, v string, m map[string]string) {
	if m["wait_time"] != "" {
		b.ignore(key, "wait_time is set too and wins")
		return
	}
	if n := b.value(key, v); n != nil {
		setKey(b.cfg, key, n)
	}
}

// sqsAttributesRule passes queue attributes on; a nested value (such as
// RedrivePolicy as an object) becomes the JSON text AWS expects.
func sqsAttributesRule(b *declareBuilder, key, v string, _ map[string]string) {
	n := b.value(key, v)
	if n == nil {
		return
	}
	if n.Kind == yaml.MappingNode {
		for i := 1; i < len(n.Content); i += 2 {
			c := n.Content[i]
			if c.Kind != yaml.MappingNode && c.Kind != yaml.SequenceNode {
				continue
			}
			var x any
			if err := c.Decode(&x); err != nil {
				b.errs = append(b.errs, errAt(key+"."+n.Content[i-1].Value, 0, "%v", err))
				continue
			}
			text, err := json.Marshal(x)
			if err != nil {
				b.errs = append(b.errs, errAt(key+"."+n.Content[i-1].Value, 0, "%v", err))
				continue
			}
			n.Content[i] = strScalar(string(text))
		}
	}
	setKey(b.cfg, key, n)
}

// kafkaProducerRule passes producer_options on. A timeout sent as a JSON
// number is nanoseconds, as RoadRunner's JSON decoding of a declared
// pipeline reads it (in a file an integer is seconds; the SDK sends
// strings such as "10s").
func kafkaProducerRule(b *declareBuilder, key, v string, _ map[string]string) {
	n := b.value(key, v)
	if n == nil {
		return
	}
	if n.Kind == yaml.MappingNode {
		for _, k := range []string{"request_timeout", "delivery_timeout", "transaction_timeout"} {
			if d := findKey(n, k); d != nil && d.Kind == yaml.ScalarNode && d.ShortTag() == "!!int" {
				setKey(n, k, strScalar(d.Value+"ns"))
			}
		}
	}
	setKey(b.cfg, key, n)
}

// amqpExchangeTypeRule passes exchange_type on, reading "topics" (what
// the SDK's ExchangeType::Topics sends) as RabbitMQ's "topic".
func amqpExchangeTypeRule(b *declareBuilder, key, v string, _ map[string]string) {
	if v == "topics" {
		v = "topic"
	}
	if n := b.value(key, v); n != nil {
		setKey(b.cfg, key, n)
	}
}
