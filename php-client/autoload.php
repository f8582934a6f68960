<?php

/**
 * Autoloader for using the Pipevisor client without Composer:
 *
 *     require_once __DIR__ . '/path/to/php-client/autoload.php';
 *
 * It registers a PSR-4 autoloader that maps the `Pipevisor\` namespace onto
 * the src/ directory next to this file, exactly as composer.json does. It
 * defines nothing else and has no other side effect. With Composer, use
 * vendor/autoload.php instead (composer.json declares the same mapping).
 */

declare(strict_types=1);

spl_autoload_register(static function (string $class): void {
    if (!str_starts_with($class, 'Pipevisor\\') || str_starts_with($class, 'Pipevisor\\Tests\\')) {
        return;
    }
    $file = __DIR__ . '/src/' . str_replace('\\', '/', substr($class, 10)) . '.php';
    if (is_file($file)) {
        require $file;
    }
});
